"""The policies the benchmark compares, all behind the simulator's `SimPolicy` interface.

`OursPolicy` drives `dialogue_operator.autoscale.decide`, round-tripping its state through the dict that
status would hold. The peers are re-implementations from their public descriptions (ANCHORS.md):
KubeAI's autoscaler, an HPA driven by KEDA on `vllm:num_requests_waiting`, and an oracle that knows the trace.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from dialogue_operator.autoscale import Observation, PolicyConfig, PolicyState, decide


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


class OursPolicy:
    """dialogue-operator's policy; the state survives a JSON round trip every tick, as it does through status."""

    def __init__(self, config: PolicyConfig, interval_s: float = 10.0, name: str = "ours") -> None:
        self.name = name
        self.interval_s = interval_s
        self.config = config
        self._state: dict[str, Any] | None = None
        self.reasons: dict[str, int] = {}

    def decide(self, obs: Observation, now_s: float) -> tuple[int, str]:
        state = PolicyState.from_dict(self._state) if self._state is not None else None
        d = decide(state, obs, now_s, self.config)
        self._state = d.new_state.to_dict()
        self.reasons[d.reason] = self.reasons.get(d.reason, 0) + 1
        return d.desired_replicas, d.reason


class KubeAIPolicy:
    """KubeAI: every 10 s, ceil(10-minute moving average of in-flight requests / targetRequests), clamped;
    scale down only after 3 consecutive lower decisions. The proxy's in-flight count includes held requests."""

    def __init__(
        self,
        min_replicas: int,
        max_replicas: int,
        target_requests: float,
        window_s: float = 600.0,
        name: str = "kubeai",
    ) -> None:
        self.name = name
        self.interval_s = 10.0
        self.min_replicas, self.max_replicas, self.target = min_replicas, max_replicas, target_requests
        self._samples: deque[float] = deque(maxlen=max(1, int(window_s / self.interval_s)))
        self._lower_streak = 0

    def decide(self, obs: Observation, now_s: float) -> tuple[int, str]:
        self._samples.append(float(obs.gateway_in_flight if obs.gateway_in_flight is not None else obs.load))
        avg = sum(self._samples) / len(self._samples)
        desired = _clamp(math.ceil(avg / self.target), self.min_replicas, self.max_replicas)
        current = obs.current_replicas
        if current == 0 and obs.gateway_held:
            return max(1, desired), "scale-from-zero"
        if desired < current:
            self._lower_streak += 1
            if self._lower_streak < 3:
                return current, "waiting-3-lower"
            self._lower_streak = 0
            return desired, "scale-down"
        self._lower_streak = 0
        return desired, "average"


class HpaKedaPolicy:
    """HPA fed by KEDA's Prometheus scaler: AverageValue target on `vllm:num_requests_waiting` per pod
    (threshold as in vLLM production-stack's example), 10 % tolerance, scale-down stabilization 300 s,
    polled every 15 s. Scale-up: by default at most +1 pod per 60 s (the issue's setting); `up_pods`,
    `up_percent` and `up_period_s` give other HPA `behavior.scaleUp` policies (selectPolicy Max), e.g. the
    Kubernetes default of +4 pods or +100 % per 15 s."""

    def __init__(
        self,
        min_replicas: int,
        max_replicas: int,
        waiting_threshold: float = 5.0,
        stabilization_s: float = 300.0,
        *,
        up_pods: int = 1,
        up_percent: float = 0.0,
        up_period_s: float = 60.0,
        name: str = "hpa-keda",
    ) -> None:
        self.name = name
        self.interval_s = 15.0
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.threshold, self.stabilization_s = waiting_threshold, stabilization_s
        self.up_pods, self.up_percent, self.up_period_s = up_pods, up_percent, up_period_s
        self._recs: deque[tuple[float, int]] = deque()
        self._last_up_s = -math.inf

    def decide(self, obs: Observation, now_s: float) -> tuple[int, str]:
        current = obs.current_replicas
        pods = max(1, len(obs.replicas))
        ratio = (obs.engine_waiting / pods) / self.threshold
        raw = current if abs(ratio - 1.0) <= 0.1 else math.ceil(obs.engine_waiting / self.threshold)
        raw = _clamp(raw, self.min_replicas, self.max_replicas)
        self._recs.append((now_s, raw))
        while self._recs and self._recs[0][0] <= now_s - self.stabilization_s:
            self._recs.popleft()
        if raw > current:
            if now_s - self._last_up_s < self.up_period_s:
                return current, "up-rate-limited"
            self._last_up_s = now_s
            step = max(self.up_pods, math.ceil(current * self.up_percent / 100.0))
            return min(raw, current + step), "waiting-above-threshold"
        stabilized = min(current, max(r for _, r in self._recs))
        return stabilized, "stabilized" if stabilized == current else "scale-down"


class OraclePolicy:
    """Knows the future: provisions each minute's replicas one cold start (plus a tick) ahead and keeps them
    until that minute is over. `needed_per_minute[m]` is a plan: the heuristic one below (trace and replica
    capacity) or the one `e2e.tracesim.oracle` searches for. Minutes past the plan get `min_replicas`."""

    def __init__(
        self, needed_per_minute: list[int], cold_start_s: float, min_replicas: int = 1, name: str = "oracle"
    ) -> None:
        self.name = name
        self.interval_s = 10.0
        self.needed = needed_per_minute
        self.lead_s = cold_start_s + self.interval_s
        self.min_replicas = min_replicas

    def decide(self, obs: Observation, now_s: float) -> tuple[int, str]:
        first = int(now_s // 60)
        last = int((now_s + self.lead_s) // 60)
        window = [self.needed[m] for m in range(first, last + 1) if m < len(self.needed)]
        return max([self.min_replicas, *window]), "plan"


def needed_replicas_per_minute(
    arrivals_s: list[float], capacity_rps: float, peak_window_s: float = 20.0, headroom: float = 1.0
) -> list[int]:
    """Replicas each minute needs: its busiest `peak_window_s` arrival rate over the per-replica capacity."""
    if not arrivals_s:
        return []
    minutes = int(max(arrivals_s) // 60) + 1
    slots = int(60 // peak_window_s)
    counts = [[0] * slots for _ in range(minutes)]
    for t in arrivals_s:
        m = int(t // 60)
        counts[m][min(slots - 1, int((t - m * 60) // peak_window_s))] += 1
    return [math.ceil(max(c) / peak_window_s * headroom / capacity_rps) for c in counts]
