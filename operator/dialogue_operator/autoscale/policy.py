"""The replica policy: desired replicas from load, saturation and SLO signals, with windows and limits (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dialogue_operator.autoscale.config import PolicyConfig
from dialogue_operator.autoscale.observation import Observation
from dialogue_operator.autoscale.state import PolicyState


class Reason:
    """Machine-readable decision reasons (CamelCase, usable as Event and Condition reasons)."""

    SCALE_FROM_ZERO = "ScaleFromZero"
    SCALE_TO_ZERO = "ScaleToZero"
    AWAITING_SCALE_TO_ZERO = "AwaitingScaleToZero"
    IDLE = "Idle"
    LOAD_ABOVE_TARGET = "LoadAboveTarget"
    LOAD_BELOW_TARGET = "LoadBelowTarget"
    WITHIN_TARGET = "WithinTarget"
    PANIC = "Panic"
    KV_CACHE_PRESSURE = "KVCachePressure"
    QUEUE_PRESSURE = "QueuePressure"
    TTFT_ABOVE_TARGET = "TTFTAboveTarget"
    HOLDING_IN_PANIC = "HoldingInPanic"
    HOLDING_FOR_TTFT = "HoldingForTTFT"
    HOLDING_FOR_STARTING = "HoldingForStartingReplicas"
    SCALE_DOWN_STABILIZING = "ScaleDownStabilizing"
    AT_MIN_REPLICAS = "AtMinReplicas"
    AT_MAX_REPLICAS = "AtMaxReplicas"
    WAITING_FOR_GPU = "WaitingForGPU"
    PARTIAL_METRICS = "PartialMetrics"


# Seconds left before an idle model at one replica scales to zero (set with Reason.AWAITING_SCALE_TO_ZERO).
SIGNAL_SCALE_TO_ZERO_IN_S = "scaleToZeroInSeconds"


@dataclass(frozen=True)
class Decision:
    """What to do now and why; `new_state` must be passed to the next call (and persisted in status)."""

    desired_replicas: int
    reason: str
    message: str
    new_state: PolicyState
    signals: dict[str, float] = field(default_factory=dict)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _kept(replicas: int, age_s: float, config: PolicyConfig, hold_s: float) -> int:
    """What a past recommendation still holds up: all of it for `hold_s` (`scale_down_hold_s`, or the steady
    one), then a share decaying linearly, in steps of `scale_down_decay_step_s`, to `scale_down_floor_ratio` at
    the end of the stabilization window (a decaying peak; the steps keep it from removing a replica at every
    tick)."""
    hold_s = min(hold_s, config.scale_down_stabilization_s)
    span_s = config.scale_down_stabilization_s - hold_s
    if age_s <= hold_s or span_s <= 0:
        return replicas
    step_s = config.scale_down_decay_step_s
    decayed_s = math.floor((age_s - hold_s) / step_s) * step_s if step_s > 0 else age_s - hold_s
    share = 1.0 - (1.0 - config.scale_down_floor_ratio) * min(1.0, decayed_s / span_s)
    return math.ceil(replicas * share - 1e-9)


def next_target_scale(
    previous: float, ttft_p95_s: float | None, config: PolicyConfig, *, steady: bool, ttft_miss: bool
) -> float:
    """The per-replica target's multiplier after one tick: 1 unless the traffic is steady and the controller is
    on; a TTFT breach backs it off (keeps `target_scale_backoff` of its excess over 1); otherwise it moves toward
    the TTFT setpoint by a bounded step (no TTFT this tick: kept). Always within [1, `target_scale_max`]."""
    if config.ttft_setpoint_ratio is None or config.ttft_p95_target_s is None or not steady:
        return 1.0
    if ttft_miss:
        return 1.0 + (min(config.target_scale_max, previous) - 1.0) * config.target_scale_backoff
    if ttft_p95_s is None:
        return min(config.target_scale_max, max(1.0, previous))
    setpoint_s = config.ttft_setpoint_ratio * config.ttft_p95_target_s
    step = config.target_scale_gain * (setpoint_s - ttft_p95_s) / setpoint_s
    step = max(-config.target_scale_step, min(config.target_scale_step, step))
    return min(config.target_scale_max, max(1.0, previous * (1.0 + step)))


def decide(state: PolicyState | None, obs: Observation, now_s: float, config: PolicyConfig) -> Decision:
    """Desired replicas for one model at time `now_s`.

    Contract: pure and deterministic; `now_s` only ever moves forward between calls with the same state.
    Scale-up is fast (short panic window, large steps), scale-down slow (a decaying peak of the
    stabilization window's recommendations, bounded steps; replicas the TTFT guard adds join it only while
    the traffic is bursty, see `PolicyConfig.burst_memory_s`; on steady traffic the per-replica target follows
    the measured TTFT within bounds, see `PolicyConfig.ttft_setpoint_ratio`). Never scales down on partial
    metrics, never below one replica unless the model was idle for `scale_to_zero_after_s`, never adds replicas
    while some are Pending for want of a GPU.
    """
    state = state or PolicyState()
    current = obs.current_replicas
    target = config.target_in_flight_per_replica
    load = obs.load
    active = load > 0 or obs.gateway_held > 0
    last_active_s = now_s if active or state.last_active_s is None else state.last_active_s

    samples = [(t, v) for t, v in state.load_samples if t > now_s - config.stable_window_s]
    samples.append((now_s, load))
    stable_avg = _mean([v for _, v in samples])
    panic_avg = _mean([v for t, v in samples if t > now_s - config.panic_window_s])
    signals = {
        "load": load,
        "stableLoad": round(stable_avg, 3),
        "panicLoad": round(panic_avg, 3),
        "kvCacheUsage": round(obs.kv_cache_usage_mean, 3),
    }
    if obs.ttft_p95_s is not None:
        signals["ttftP95Seconds"] = round(obs.ttft_p95_s, 3)
    if obs.ttft_p95_minute_s is not None:
        signals["ttftP95MinuteSeconds"] = round(obs.ttft_p95_minute_s, 3)

    def finish(
        desired: int,
        reason: str,
        message: str,
        rec: int | None,
        panic_until_s: float | None,
        *,
        last_spike_s: float | None = state.last_spike_s,
        target_scale: float = 1.0,
    ) -> Decision:
        recs = [(t, r) for t, r in state.recommendations if t > now_s - config.scale_down_stabilization_s]
        if not state.recommendations and current > 0:
            recs.append((now_s, current))
        if rec is not None:
            recs.append((now_s, rec))
        new_state = PolicyState(
            load_samples=tuple(samples),
            recommendations=tuple(recs),
            last_active_s=last_active_s,
            panic_until_s=panic_until_s,
            last_scale_s=now_s if desired != current else state.last_scale_s,
            last_scale_up_s=now_s if desired > current else state.last_scale_up_s,
            last_spike_s=last_spike_s,
            target_scale=target_scale,
        )
        return Decision(desired, reason, message, new_state, signals)

    # From zero: the gateway holds requests and the engines report nothing; any demand brings replicas back.
    if current == 0:
        if active:
            want = min(config.max_replicas, max(1, config.min_replicas, math.ceil(load / target)))
            held = f"{obs.gateway_held} request(s) held at the gateway" if obs.gateway_held else f"load {load:g}"
            return finish(want, Reason.SCALE_FROM_ZERO, f"{held}: scaling from 0 to {want}", want, None)
        if config.min_replicas > 0:
            return finish(
                config.min_replicas,
                Reason.AT_MIN_REPLICAS,
                f"raising to minReplicas {config.min_replicas} ({config.bounds_from})",
                None,
                None,
            )
        return finish(0, Reason.IDLE, "no load; staying at zero", 0, None)

    # 1. Recommendation from concurrency (stable and panic windows). Spikes and panic are judged on the
    # configured target; sizing uses it times the TTFT-learned `target_scale` (1 unless traffic is steady).
    rec_panic = math.ceil(panic_avg / (target * min(config.target_scale_max, state.target_scale)))
    ready_floor = max(1, obs.ready_replicas)
    panic_now = rec_panic >= config.panic_threshold * ready_floor and rec_panic > current
    panic_until_s: float | None = state.panic_until_s
    if panic_now:
        panic_until_s = now_s + config.stable_window_s
    elif panic_until_s is not None and now_s >= panic_until_s:
        panic_until_s = None
    in_panic = panic_until_s is not None
    spike = panic_now or (panic_avg >= config.panic_threshold * stable_avg and panic_avg >= target)
    # A fresh state (a new model, or a status that lost its memory) counts as having just seen a spike.
    last_spike_s = now_s if spike or state.last_spike_s is None else state.last_spike_s
    bursty = config.burst_memory_s is None or (
        last_spike_s is not None and now_s - last_spike_s <= config.burst_memory_s
    )
    ttft_miss = (
        config.ttft_p95_target_s is not None
        and obs.ttft_p95_s is not None
        and obs.ttft_p95_s > config.ttft_p95_target_s
    )
    steady = not bursty and not in_panic
    target_scale = next_target_scale(state.target_scale, obs.ttft_p95_s, config, steady=steady, ttft_miss=ttft_miss)
    # The TTFT guard (and the hold it puts on scale-down) judges the last minute's p95 on steady traffic, the
    # last interval's on bursty traffic (see `PolicyConfig.steady_ttft_guard_on_minute`).
    guard_ttft_s, guard_window = obs.ttft_p95_s, ""
    if steady and config.steady_ttft_guard_on_minute and obs.ttft_p95_minute_s is not None:
        guard_ttft_s, guard_window = obs.ttft_p95_minute_s, " over the last minute"
    guard_miss = (
        config.ttft_p95_target_s is not None and guard_ttft_s is not None and guard_ttft_s > config.ttft_p95_target_s
    )
    effective = target * target_scale
    rec = max(math.ceil(stable_avg / effective), math.ceil(panic_avg / effective))
    driver = Reason.PANIC if panic_now else Reason.LOAD_ABOVE_TARGET
    shown = f"{effective:.3g} (x{target_scale:.2f}, steady traffic)" if target_scale > 1 else f"{target:g}"
    detail = f"in-flight {load:g} (avg {stable_avg:.1f}/{config.stable_window_s:g}s) vs target {shown}/replica"
    if config.ttft_setpoint_ratio is not None:
        signals["targetScale"] = round(target_scale, 3)
    # On steady traffic with TTFT under the setpoint, past recommendations are held in full for less time.
    hold_s = config.scale_down_hold_s
    if (
        config.steady_scale_down_hold_s is not None
        and config.ttft_setpoint_ratio is not None
        and config.ttft_p95_target_s is not None
        and target_scale > 1
        and obs.ttft_p95_s is not None
        and obs.ttft_p95_s < config.ttft_setpoint_ratio * config.ttft_p95_target_s
    ):
        hold_s = min(hold_s, config.steady_scale_down_hold_s)

    # 2. Saturation signals: KV cache and queue on the replicas that answered.
    scraped = len(obs.replicas)
    if scraped and obs.kv_cache_usage_mean > config.kv_cache_target_ratio:
        kv_rec = math.ceil(scraped * obs.kv_cache_usage_mean / config.kv_cache_target_ratio) + obs.starting_replicas
        if kv_rec > rec:
            rec, driver = kv_rec, Reason.KV_CACHE_PRESSURE
            detail = f"KV cache {obs.kv_cache_usage_mean:.0%} > target {config.kv_cache_target_ratio:.0%}"
    waiting = obs.engine_waiting
    if scraped and waiting / scraped > config.queue_tolerance_per_replica:
        running_per_replica = max(1.0, obs.engine_running / scraped)
        q_rec = scraped + obs.starting_replicas + math.ceil(waiting / running_per_replica)
        if q_rec > rec:
            rec, driver = q_rec, Reason.QUEUE_PRESSURE
            detail = f"{waiting:g} request(s) waiting in engine queues ({waiting / scraped:.1f}/replica)"

    # 3. TTFT SLO guard: add replicas when p95 misses the target and none are already on the way.
    reserve_rec = rec  # what the decaying peak remembers: TTFT-guard additions only while bursty
    if guard_miss and obs.starting_replicas == 0:
        step_ratio = config.ttft_guard_step_ratio if bursty else config.steady_ttft_guard_step_ratio
        guard = current + max(1, math.ceil(current * step_ratio))
        if guard > rec:
            rec, driver = guard, Reason.TTFT_ABOVE_TARGET
            detail = f"TTFT p95{guard_window} {guard_ttft_s:.2f}s > target {config.ttft_p95_target_s:g}s"
            if bursty:
                reserve_rec = rec

    # 4. Stabilize: up at once, down only to the highest recommendation of the window. A fresh state (first
    # decision, or a status that lost the window) counts as having recommended the current size just now.
    history = [(t, r) for t, r in state.recommendations if t > now_s - config.scale_down_stabilization_s]
    if not state.recommendations:
        history.append((now_s, current))
    window_max = max([rec, *(_kept(r, now_s - t, config, hold_s) for t, r in history)])
    if rec > current:
        desired, reason = rec, driver
    elif rec == current:
        desired, reason = current, Reason.WITHIN_TARGET
    else:
        desired = min(current, window_max)
        reason = Reason.LOAD_BELOW_TARGET if desired < current else Reason.SCALE_DOWN_STABILIZING
    if rec < current and in_panic:
        desired, reason = current, Reason.HOLDING_IN_PANIC
    elif rec < current and guard_miss:
        desired, reason = current, Reason.HOLDING_FOR_TTFT
    elif (
        desired < current
        and obs.starting_replicas > 0
        and config.starting_hold_s is not None
        and state.last_scale_up_s is not None
        and now_s - state.last_scale_up_s <= config.starting_hold_s
    ):
        desired, reason = current, Reason.HOLDING_FOR_STARTING
        detail = f"{obs.starting_replicas} replica(s) asked for {now_s - state.last_scale_up_s:.0f}s ago still starting"
    notes: list[str] = []

    # 5. Step limits. Up steps are sized on the Ready replicas, not on those still starting: while new replicas
    # cold-start the backlog (and so the in-flight count) keeps growing, and sizing on it would compound.
    up_limit = max(
        current, ready_floor + max(config.min_scale_up_step, math.ceil(ready_floor * (config.max_scale_up_rate - 1)))
    )
    if desired > up_limit:
        notes.append(f"step-limited from {desired}")
        desired = up_limit
    rec = min(rec, up_limit)
    if desired < current:
        floor = current - max(1, math.floor(current * config.max_scale_down_ratio))
        if desired < floor:
            notes.append(f"step-limited from {desired}")
            desired = floor

    # 6. Zero and bounds.
    idle_s = now_s - last_active_s
    gateway_idle = obs.gateway_in_flight in (None, 0)
    zero_after_s = config.scale_to_zero_after_s
    may_zero = config.min_replicas == 0 and zero_after_s is not None and not active and gateway_idle and obs.complete
    if may_zero and zero_after_s is not None and idle_s >= zero_after_s:
        desired, reason = 0, Reason.SCALE_TO_ZERO
        detail = f"idle for {idle_s:.0f}s >= scaleToZeroAfterSeconds {zero_after_s:g}"
    else:
        desired = max(desired, 1)
        if may_zero and zero_after_s is not None and desired == current == 1:
            reason = Reason.AWAITING_SCALE_TO_ZERO
            signals[SIGNAL_SCALE_TO_ZERO_IN_S] = round(max(0.0, zero_after_s - idle_s), 1)
            detail = (
                f"idle for {idle_s:.0f}s; scaling to zero in {zero_after_s - idle_s:.0f}s "
                f"(scaleToZeroAfterSeconds {zero_after_s:g})"
            )
    if desired > config.max_replicas:
        notes.append(f"wanted {desired}")
        desired, reason = config.max_replicas, Reason.AT_MAX_REPLICAS
    if desired < config.min_replicas:
        desired, reason = config.min_replicas, Reason.AT_MIN_REPLICAS

    # 7. Safety: never pile up unschedulable pods; never scale down on partial data.
    if desired > current and obs.unschedulable_replicas > 0:
        notes.append(f"wanted {desired}")
        desired, reason = current, Reason.WAITING_FOR_GPU
        detail = f"{obs.unschedulable_replicas} replica(s) Pending: no node has a free GPU; not adding more"
    if desired < current and not obs.complete:
        notes.append(f"wanted {desired}")
        desired, reason = current, Reason.PARTIAL_METRICS
        detail = (
            f"{obs.failed_scrapes or obs.ready_replicas - scraped} of {obs.ready_replicas} ready pod(s) "
            "did not answer /metrics; not scaling down"
        )

    # The user's bounds win over every hold above (a lowered maxReplicas or raised minReplicas applies at once).
    bounded = min(config.max_replicas, max(config.min_replicas, desired))
    if bounded != desired:
        reason = Reason.AT_MAX_REPLICAS if bounded < desired else Reason.AT_MIN_REPLICAS
        detail = f"{config.bounds_from} bounds are [{config.min_replicas}, {config.max_replicas}]"
        desired = bounded

    verb = "scale up" if desired > current else "scale down" if desired < current else "hold"
    message = f"{verb} {current} -> {desired}: {detail}"
    if in_panic:
        message += " [panic mode]"
    if notes:
        message += f" ({'; '.join(notes)})"
    return finish(
        desired,
        reason,
        message,
        min(rec, reserve_rec),
        panic_until_s,
        last_spike_s=last_spike_s,
        target_scale=round(target_scale, 6),
    )
