"""The event-driven simulation: trace arrivals, replicas as sim engine models, a router, a policy on a timer."""

from __future__ import annotations

import copy
import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

from dialogue_operator.autoscale import Observation, ReplicaMetrics
from dialogue_operator.autoscale.collector import TtftWindow
from dialogue_runtime.engine.config import SimProfile
from dialogue_runtime.sim.model import EngineModel, SimRequest
from dialogue_runtime.vllm_metrics import HistogramData

from e2e.tracesim.metrics import RequestRecord, SimResult
from e2e.tracesim.trace import TraceRequest

# vLLM's `vllm:time_to_first_token_seconds` bucket bounds (as in the shared /metrics captures).
TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                  20.0, 40.0, 80.0, 160.0, 640.0, 2560.0, math.inf)  # fmt: skip


class SimPolicy(Protocol):
    """A replica policy as the simulator drives it: called every `interval_s` with what a collector would see."""

    name: str
    interval_s: float

    def decide(self, obs: Observation, now_s: float) -> tuple[int, str]:
        """Desired replicas and a short reason."""
        ...


@dataclass(frozen=True)
class SimConfig:
    """How the cluster behaves around the policy."""

    profile: SimProfile = field(default_factory=SimProfile)
    cold_start_s: float = 60.0
    initial_replicas: int = 1
    max_gpus: int | None = None
    ttft_target_s: float = 5.0
    held_too_long_s: float = 120.0
    drain_limit_s: float = 1800.0


ReplicaPhase = Literal["pending", "starting", "ready", "draining"]


@dataclass
class _Replica:
    name: str
    engine: EngineModel
    phase: ReplicaPhase
    uid: int = 0
    ready_at_s: float = math.inf
    version: int = 0

    @property
    def in_flight(self) -> int:
        return self.engine.num_running + self.engine.num_waiting


@dataclass(frozen=True)
class ScaleEvent:
    time_s: float
    from_replicas: int
    to_replicas: int
    reason: str


class Simulation:
    """One replay of a trace under one policy; `run()` returns the measured result."""

    def __init__(self, trace: list[TraceRequest], policy: SimPolicy, config: SimConfig) -> None:
        self.trace = trace
        self.policy = policy
        self.config = config
        self.records = [RequestRecord(r.arrival_s) for r in trace]
        self.replicas: list[_Replica] = []
        self.held: deque[int] = deque()
        self.scale_events: list[ScaleEvent] = []
        self._heap: list[tuple[float, int, int, int]] = []  # (time, seq, replica uid, version)
        self._by_uid: dict[int, _Replica] = {}
        self._seq = 0
        self._counter = 0
        # Cumulative TTFT histogram of all engines, read by the operator's own TtftWindow like scraped pods.
        self._ttft_buckets = [0.0] * len(TTFT_BUCKETS_S)
        self._ttft_count = self._ttft_sum = 0.0
        self._ttft_window = TtftWindow()
        self._now = 0.0
        self.gpu_seconds = 0.0
        self.replica_timeline: list[tuple[float, int]] = []
        self._started = False
        self._next_arrival = 0
        self._next_tick_s = 0.0
        self._end_limit_s = math.inf

    # --- replicas -------------------------------------------------------------------------------------------

    def _new_replica(self, now_s: float) -> None:
        self._counter += 1
        engine = EngineModel(self.config.profile, token_events=False)
        engine.advance(now_s)
        active = sum(1 for r in self.replicas if r.phase != "pending")
        replica = _Replica(f"r{self._counter}", engine, "pending", uid=self._counter)
        self._by_uid[replica.uid] = replica
        if self.config.max_gpus is None or active < self.config.max_gpus:
            replica.phase, replica.ready_at_s = "starting", now_s + self.config.cold_start_s
        self.replicas.append(replica)

    def _promote_pending(self, now_s: float) -> None:
        for r in self.replicas:
            if r.phase != "pending":
                continue
            active = sum(1 for x in self.replicas if x.phase != "pending")
            if self.config.max_gpus is not None and active >= self.config.max_gpus:
                return
            r.phase, r.ready_at_s = "starting", now_s + self.config.cold_start_s

    def _count(self, *phases: ReplicaPhase) -> int:
        return sum(1 for r in self.replicas if r.phase in phases)

    def _actuate(self, desired: int, reason: str, now_s: float) -> None:
        current = self._count("pending", "starting", "ready")
        if desired == current:
            return
        self.scale_events.append(ScaleEvent(now_s, current, desired, reason))
        for _ in range(desired - current):
            self._new_replica(now_s)
        for _ in range(current - desired):
            # Like a ReplicaSet: unscheduled pods go first, then not-ready ones, then the least busy ready one (the
            # operator sets each Ready pod's pod-deletion-cost to its requests in flight before a scale-down).
            for phase in ("pending", "starting"):
                victims = [r for r in self.replicas if r.phase == phase]
                if victims:
                    self.replicas.remove(victims[-1])
                    del self._by_uid[victims[-1].uid]
                    break
            else:
                ready = [r for r in self.replicas if r.phase == "ready"]
                victim = min(ready, key=lambda r: r.in_flight)
                victim.phase = "draining"
                self._reap(victim)
        self._promote_pending(now_s)

    def _reap(self, replica: _Replica) -> None:
        if replica.phase == "draining" and replica.in_flight == 0 and replica in self.replicas:
            self.replicas.remove(replica)
            del self._by_uid[replica.uid]
            self._promote_pending(self._now)

    # --- requests -------------------------------------------------------------------------------------------

    def _schedule(self, replica: _Replica) -> None:
        t = replica.engine.next_event_s()
        replica.version += 1
        if t is not None:
            self._seq += 1
            heapq.heappush(self._heap, (t, self._seq, replica.uid, replica.version))

    def _dispatch(self, req_idx: int, now_s: float) -> bool:
        ready = [r for r in self.replicas if r.phase == "ready"]
        if not ready:
            return False
        replica = min(ready, key=lambda r: r.in_flight)
        req = self.trace[req_idx]
        self.records[req_idx].submit_s = now_s
        replica.engine.submit(SimRequest(str(req_idx), req.prompt_tokens, req.output_tokens), now_s)
        self._collect(replica, now_s)
        return True

    def _collect(self, replica: _Replica, now_s: float) -> None:
        for ev in replica.engine.advance(now_s):
            if ev.kind == "first_token" and ev.ttft_s is not None:
                rec = self.records[int(ev.request_id)]
                rec.ttft_s = (rec.submit_s or rec.arrival_s) - rec.arrival_s + ev.ttft_s
                self._ttft_count += 1
                self._ttft_sum += ev.ttft_s
                for i, le in enumerate(TTFT_BUCKETS_S):
                    if ev.ttft_s <= le:
                        self._ttft_buckets[i] += 1
            elif ev.kind == "rejected":
                self.records[int(ev.request_id)].rejected = True
        self._schedule(replica)
        self._reap(replica)

    # --- the policy -----------------------------------------------------------------------------------------

    def _observe(self, now_s: float) -> Observation:
        metrics = []
        for r in list(self.replicas):
            if r.phase in ("ready", "draining"):
                self._collect(r, now_s)
        for r in self.replicas:
            if r.phase == "ready":
                e = r.engine
                metrics.append(ReplicaMetrics(r.name, e.num_running, e.num_waiting, e.kv_cache_usage_ratio))
        ttft = self._ttft_window.update({"engines": self._ttft_histogram()}, now_s)
        in_flight = sum(r.in_flight for r in self.replicas if r.phase in ("ready", "draining"))
        return Observation(
            current_replicas=self._count("pending", "starting", "ready"),
            ready_replicas=len(metrics),
            replicas=tuple(metrics),
            starting_replicas=self._count("starting"),
            unschedulable_replicas=self._count("pending"),
            ttft_p95_s=ttft.interval_s,
            ttft_p95_minute_s=ttft.minute_s,
            gateway_in_flight=in_flight + len(self.held),
            gateway_held=len(self.held),
        )

    # --- the loop -------------------------------------------------------------------------------------------

    def _advance_clock(self, t: float) -> None:
        active = self._count("starting", "ready", "draining")
        self.gpu_seconds += active * (t - self._now)
        self._now = t

    def run(self) -> SimResult:
        """Replay the whole trace (and drain what is left, up to `drain_limit_s`), then summarize."""
        self.run_until(math.inf)
        return self.result()

    def _ttft_histogram(self) -> HistogramData:
        return HistogramData(
            tuple(zip(TTFT_BUCKETS_S, self._ttft_buckets, strict=True)), self._ttft_count, self._ttft_sum
        )

    def _start(self) -> None:
        self._started = True
        self._ttft_window.update({"engines": self._ttft_histogram()}, 0.0)  # the baseline of the first tick
        for _ in range(self.config.initial_replicas):
            self._new_replica(0.0)
            self.replicas[-1].phase, self.replicas[-1].ready_at_s = "ready", 0.0
        n = len(self.trace)
        self._end_limit_s = (self.trace[-1].arrival_s if n else 0.0) + self.config.drain_limit_s

    def run_until(self, limit_s: float) -> bool:
        """Process every event at or before `limit_s`; True once the replay is over (nothing left to do).

        A simulation stopped here can be `fork`ed and both copies continued independently."""
        if not self._started:
            self._start()
        n = len(self.trace)
        while True:
            while self._heap and (
                self._heap[0][2] not in self._by_uid or self._heap[0][3] != self._by_uid[self._heap[0][2]].version
            ):
                heapq.heappop(self._heap)
            t_engine = self._heap[0][0] if self._heap else math.inf
            i = self._next_arrival
            t_arrival = self.trace[i].arrival_s if i < n else math.inf
            t_ready = min((r.ready_at_s for r in self.replicas if r.phase == "starting"), default=math.inf)
            busy = any(r.in_flight for r in self.replicas) or self.held
            if i >= n and not busy:
                return True
            t = min(t_engine, t_arrival, t_ready, self._next_tick_s)
            if t > self._end_limit_s:
                return True
            if t > limit_s:
                return False
            self._advance_clock(max(t, self._now))
            if t == t_engine:
                _, _, uid, _ = heapq.heappop(self._heap)
                self._collect(self._by_uid[uid], self._now)
            elif t == t_ready:
                for r in self.replicas:
                    if r.phase == "starting" and r.ready_at_s <= self._now:
                        r.phase = "ready"
                while self.held and self._dispatch(self.held[0], self._now):
                    self.held.popleft()
            elif t == t_arrival:
                if self.held or not self._dispatch(i, self._now):
                    self.held.append(i)
                self._next_arrival += 1
            else:
                obs = self._observe(self._now)
                desired, reason = self.policy.decide(obs, self._now)
                self._actuate(desired, reason, self._now)
                self.replica_timeline.append((self._now, self._count("starting", "ready", "draining")))
                self._next_tick_s += self.policy.interval_s

    def fork(self, policy: SimPolicy) -> Simulation:
        """An independent copy of this simulation at its current time, continuing under `policy`."""
        twin = copy.copy(self)
        twin.policy = policy
        twin.records = [copy.copy(r) for r in self.records]
        twin.replicas = copy.deepcopy(self.replicas)
        twin._by_uid = {r.uid: r for r in twin.replicas}
        twin._heap = list(self._heap)
        twin.held = deque(self.held)
        twin.scale_events = list(self.scale_events)
        twin.replica_timeline = list(self.replica_timeline)
        twin._ttft_buckets = list(self._ttft_buckets)
        twin._ttft_window = copy.deepcopy(self._ttft_window)
        return twin

    def result(self) -> SimResult:
        """The summary of what was replayed so far."""
        return SimResult.build(
            policy=self.policy.name,
            records=self.records,
            gpu_seconds=self.gpu_seconds,
            scale_events=len(self.scale_events),
            ttft_target_s=self.config.ttft_target_s,
            held_too_long_s=self.config.held_too_long_s,
            timeline=self.replica_timeline,
        )
