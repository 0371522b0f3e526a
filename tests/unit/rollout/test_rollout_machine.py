"""The rollout state machine, driven like the operator drives it: observation after observation, time passing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from dialogue_operator.rollout import (
    ActionKind,
    AnalysisSpec,
    EvaluationObservation,
    JobObservation,
    JobState,
    Observation,
    Phase,
    RolloutSpec,
    RolloutState,
    StepResult,
    VariantMetrics,
    new_state,
    step,
)
from pydantic import ValidationError

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
OK_COMPRESSION = JobObservation(state=JobState.SUCCEEDED)
ELIGIBLE = EvaluationObservation(state=JobState.SUCCEEDED, eligible=True, recovery=0.98, agreement=0.9, threshold=0.9)


@dataclass
class Traffic:
    """Cumulative per-variant gateway counters, as the operator would scrape them."""

    requests: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    ttfts: dict[str, list[float]] = field(default_factory=dict)

    def serve(self, variant: str, n: int, ttft_s: float = 0.2, errors: int = 0) -> None:
        self.requests[variant] = self.requests.get(variant, 0) + n
        self.errors[variant] = self.errors.get(variant, 0) + errors
        self.ttfts.setdefault(variant, []).extend([ttft_s] * (n - errors))

    def metrics(self) -> dict[str, VariantMetrics]:
        out = {}
        for v, n in self.requests.items():
            samples = self.ttfts[v]
            counts = [sum(1 for t in samples if t <= b) for b in BOUNDS] + [len(samples)]
            out[v] = VariantMetrics(
                requests=n, errors=self.errors[v], ttft_bucket_bounds_s=BOUNDS, ttft_bucket_counts=tuple(counts)
            )
        return out


def spec(**overrides: object) -> RolloutSpec:
    base: dict[str, object] = {
        "target_variant": "w8a8",
        "revision": "r1",
        "steps": (10, 50, 100),
        "step_duration_s": 60.0,
        "analysis": AnalysisSpec(min_samples=20, max_error_rate=0.02, max_ttft_p95_ratio=1.5),
        "needs_compression": True,
        "quality_gate": True,
    }
    base.update(overrides)
    return RolloutSpec.model_validate(base)


def obs(traffic: Traffic | None = None, **kw: object) -> Observation:
    fields: dict[str, object] = {"compression": OK_COMPRESSION, "evaluation": ELIGIBLE, "canary_ready": True}
    fields.update(kw)
    if traffic is not None:
        fields["metrics"] = traffic.metrics()
    return Observation.model_validate(fields)


def kinds(result: StepResult) -> list[tuple[ActionKind, str]]:
    return [(a.kind, a.variant) for a in result.actions]


def reasons(result: StepResult) -> list[str]:
    return [e.reason for e in result.events]


def run_to_first_step(s: RolloutSpec, traffic: Traffic, now_s: float = 0.0) -> RolloutState:
    result = step(new_state("base"), obs(traffic), s, now_s)
    assert result.state.phase is Phase.CANARY
    assert result.state.weights == {"base": 90, "w8a8": 10}
    return result.state


def test_happy_path_compresses_evaluates_steps_up_and_promotes() -> None:
    s = spec()
    traffic = Traffic()
    st = new_state("base")

    r = step(st, Observation(compression=JobObservation(state=JobState.RUNNING)), s, 0)
    assert r.state.phase is Phase.COMPRESSING
    assert kinds(r) == [(ActionKind.ENSURE_COMPRESSION_JOB, "w8a8")]
    assert reasons(r) == ["RolloutStarted", "CompressionStarted"]
    assert r.state.weights == {"base": 100, "w8a8": 0}

    r = step(r.state, Observation(compression=OK_COMPRESSION), s, 10)
    assert r.state.phase is Phase.EVALUATING
    assert kinds(r) == [(ActionKind.ENSURE_EVALUATION_JOB, "w8a8")]

    r = step(r.state, Observation(compression=OK_COMPRESSION, evaluation=ELIGIBLE), s, 20)
    assert r.state.phase is Phase.CANARY
    assert reasons(r) == ["QualityGatePassed", "CanaryStarted"]
    assert kinds(r) == [(ActionKind.ENSURE_CANARY, "w8a8")]
    assert r.state.weights["w8a8"] == 0, "no traffic before the canary is Ready"

    r = step(r.state, obs(traffic), s, 30)
    assert r.state.weights == {"base": 90, "w8a8": 10}
    assert reasons(r) == ["StepStarted"]

    for now_s, expected in ((100, {"base": 50, "w8a8": 50}), (170, {"base": 0, "w8a8": 100})):
        traffic.serve("base", 200)
        traffic.serve("w8a8", 40)
        r = step(r.state, obs(traffic), s, now_s)
        assert r.state.weights == expected
        assert r.state.last_analysis is not None and r.state.last_analysis.verdict == "Pass"

    traffic.serve("w8a8", 40)  # at 100 % the stable variant serves nothing: its earlier p95 is the reference
    r = step(r.state, obs(traffic), s, 240)
    assert r.state.phase is Phase.PROMOTED
    assert r.state.stable_variant == "w8a8"
    assert r.state.weights == {"w8a8": 100, "base": 0}
    assert reasons(r) == ["Promoted"]
    assert kinds(r) == [(ActionKind.REMOVE_VARIANT, "base")]

    again = step(r.state, obs(traffic), s, 300)
    assert again.state == r.state
    assert again.events == ()


def test_no_data_never_promotes_however_long_it_waits() -> None:
    s = spec()
    traffic = Traffic()
    st = run_to_first_step(s, traffic)
    for now_s in (100.0, 1000.0, 100000.0):
        r = step(st, obs(traffic), s, now_s)
        assert r.state.phase is Phase.CANARY
        assert r.state.weights["w8a8"] == 10
        assert r.state.last_analysis is not None and r.state.last_analysis.verdict == "Waiting"
        st = r.state
    r = step(st, obs(None), s, 200000.0)  # metrics unknown altogether
    assert r.state.weights["w8a8"] == 10


def test_step_waits_for_both_duration_and_request_count() -> None:
    s = spec(step_requests=100)
    traffic = Traffic()
    st = run_to_first_step(s, traffic)
    traffic.serve("base", 500)
    traffic.serve("w8a8", 60)
    r = step(st, obs(traffic), s, 120)
    assert r.state.weights["w8a8"] == 10, "duration elapsed but only 60 of 100 requests"
    traffic.serve("w8a8", 40)
    r = step(r.state, obs(traffic), s, 125)
    assert r.state.weights["w8a8"] == 50


def test_request_count_alone_paces_the_steps() -> None:
    s = spec(step_duration_s=None, step_requests=30)
    traffic = Traffic()
    st = run_to_first_step(s, traffic)
    traffic.serve("base", 300)
    traffic.serve("w8a8", 30)
    assert step(st, obs(traffic), s, 1).state.weights["w8a8"] == 50


def test_error_rate_rolls_back_at_once_with_the_numbers() -> None:
    s = spec()
    traffic = Traffic()
    st = run_to_first_step(s, traffic)
    traffic.serve("base", 300)
    traffic.serve("w8a8", 25, errors=5)
    r = step(st, obs(traffic), s, 5)  # mid-step: failures do not wait for the step to end
    assert r.state.phase is Phase.ROLLED_BACK
    assert r.state.reason == "AnalysisFailed"
    assert "error rate 0.200 (5/25) > maxErrorRate 0.02" in r.state.message
    assert r.state.weights == {"base": 100, "w8a8": 0}
    assert kinds(r) == [(ActionKind.REMOVE_CANARY, "w8a8")]
    assert [(e.type, e.reason) for e in r.events] == [("Warning", "AnalysisFailed")]
    later = step(r.state, obs(traffic), s, 500)
    assert later.state.phase is Phase.ROLLED_BACK, "the same revision is not retried"
    assert later.events == ()


def test_slow_canary_is_rolled_back_with_both_latencies() -> None:
    s = spec()
    traffic = Traffic()
    st = run_to_first_step(s, traffic)
    traffic.serve("base", 300, ttft_s=0.08)
    traffic.serve("w8a8", 30, ttft_s=0.8)
    r = step(st, obs(traffic), s, 70)
    assert r.state.phase is Phase.ROLLED_BACK
    assert "TTFT p95" in r.state.message and "maxTtftP95Ratio 1.5" in r.state.message
    assert r.state.last_analysis is not None and r.state.last_analysis.ttft_p95_ratio is not None
    assert r.state.last_analysis.ttft_p95_ratio > 1.5


def test_crash_looping_canary_rolls_back() -> None:
    s = spec()
    traffic = Traffic()
    st = run_to_first_step(s, traffic)
    r = step(st, obs(traffic, canary_ready=False, canary_crash_looping=True, canary_message="exit 1: OOM"), s, 40)
    assert r.state.phase is Phase.ROLLED_BACK
    assert r.state.reason == "CanaryCrashLooping"
    assert "exit 1: OOM" in r.state.message
    assert r.state.weights["w8a8"] == 0


def test_canary_never_ready_rolls_back_after_the_timeout() -> None:
    s = spec(ready_timeout_s=300)
    r = step(new_state("base"), obs(canary_ready=False), s, 0)
    assert r.state.phase is Phase.CANARY
    r = step(r.state, obs(canary_ready=False), s, 299)
    assert r.state.phase is Phase.CANARY
    r = step(r.state, obs(canary_ready=False), s, 301)
    assert r.state.phase is Phase.ROLLED_BACK
    assert r.state.reason == "CanaryNotReady"


def test_quality_gate_refusal_fails_without_any_traffic() -> None:
    s = spec()
    refused = EvaluationObservation(state=JobState.SUCCEEDED, eligible=False, recovery=0.41, threshold=0.9)
    r = step(new_state("base"), Observation(compression=OK_COMPRESSION, evaluation=refused), s, 0)
    assert r.state.phase is Phase.FAILED
    assert r.state.reason == "QualityGateFailed"
    assert "recovery 0.41" in r.state.message and "threshold 0.9" in r.state.message
    assert r.state.weights == {"base": 100, "w8a8": 0}
    assert (ActionKind.ENSURE_CANARY, "w8a8") not in kinds(r)


def test_compression_failure_carries_the_jobs_reason_quotes_the_error_and_starts_no_rollout() -> None:
    s = spec()
    line = "InvalidRecipe: group size 128 does not divide the model's hidden_size 576"
    failed = JobObservation(state=JobState.FAILED, reason="InvalidRecipe", message=line)
    r = step(new_state("base"), Observation(compression=failed), s, 0)
    assert (r.state.phase, r.state.reason) == (Phase.FAILED, "InvalidRecipe")
    assert r.state.message == f"compression of w8a8 failed: {line}"
    assert r.state.weights["w8a8"] == 0
    warnings = [(e.reason, e.message) for e in r.events if e.type == "Warning"]
    assert warnings == [("InvalidRecipe", r.state.message)]


def test_a_compression_failure_without_a_reason_is_compression_failed() -> None:
    crashed = JobObservation(state=JobState.FAILED, message="DeadlineExceeded: Job was active longer than specified")
    r = step(new_state("base"), Observation(compression=crashed), spec(), 0)
    assert (r.state.phase, r.state.reason) == (Phase.FAILED, "CompressionFailed")
    assert [e.reason for e in r.events if e.type == "Warning"] == ["CompressionFailed"]


def test_evaluation_job_failure_carries_its_reason_or_evaluation_failed() -> None:
    s = spec()
    missing = EvaluationObservation(
        state=JobState.FAILED, reason="GoldenSetMissing", message="GoldenSetMissing: golden set not found: /golden/g"
    )
    r = step(new_state("base"), Observation(compression=OK_COMPRESSION, evaluation=missing), s, 0)
    assert (r.state.phase, r.state.reason) == (Phase.FAILED, "GoldenSetMissing")
    assert "golden set not found: /golden/g" in r.state.message
    assert [e.reason for e in r.events if e.type == "Warning"] == ["GoldenSetMissing"]
    crashed = EvaluationObservation(state=JobState.FAILED, message="base model not found")
    r = step(new_state("base"), Observation(compression=OK_COMPRESSION, evaluation=crashed), s, 0)
    assert (r.state.phase, r.state.reason) == (Phase.FAILED, "EvaluationFailed")


def test_pre_quantized_variant_without_gate_goes_straight_to_canary() -> None:
    s = spec(needs_compression=False, quality_gate=False)
    r = step(new_state("base"), Observation(canary_ready=False), s, 0)
    assert r.state.phase is Phase.CANARY
    assert reasons(r) == ["RolloutStarted", "CanaryStarted"]


def test_pause_freezes_the_step_timer_and_resume_continues_it() -> None:
    s = spec()
    traffic = Traffic()
    st = run_to_first_step(s, traffic, now_s=0)
    traffic.serve("base", 300)
    traffic.serve("w8a8", 30)
    st = step(st, obs(traffic), s, 40).state  # 40 s of the 60 s step
    paused_spec = spec(paused=True)
    r = step(st, obs(traffic), paused_spec, 41)
    assert r.state.phase is Phase.PAUSED
    assert r.state.weights["w8a8"] == 10, "pausing keeps the current weight"
    assert reasons(r) == ["RolloutPaused"]
    assert step(r.state, obs(traffic), paused_spec, 5000).state.weights["w8a8"] == 10
    r = step(r.state, obs(traffic), s, 5000)
    assert reasons(r) == ["RolloutResumed"]
    assert r.state.weights["w8a8"] == 10, "19 s of the step remain after resuming"
    assert step(r.state, obs(traffic), s, 5015).state.weights["w8a8"] == 10
    assert step(r.state, obs(traffic), s, 5020).state.weights["w8a8"] == 50


def test_failing_canary_is_rolled_back_even_while_paused() -> None:
    s = spec(paused=True)
    traffic = Traffic()
    st = run_to_first_step(spec(), traffic)
    st = step(st, obs(traffic), s, 1).state
    assert st.phase is Phase.PAUSED
    traffic.serve("base", 300)
    traffic.serve("w8a8", 30, errors=10)
    r = step(st, obs(traffic), s, 2)
    assert r.state.phase is Phase.ROLLED_BACK


def test_pause_before_the_canary_holds_it_at_zero_weight() -> None:
    s = spec(paused=True)
    r = step(new_state("base"), obs(Traffic()), s, 0)
    assert r.state.phase is Phase.PAUSED
    assert r.state.weights["w8a8"] == 0
    r = step(r.state, obs(Traffic()), spec(), 10)
    assert r.state.phase is Phase.CANARY
    assert r.state.weights["w8a8"] == 10


def test_abort_returns_all_traffic_and_clearing_it_restarts() -> None:
    s = spec()
    traffic = Traffic()
    st = run_to_first_step(s, traffic)
    r = step(st, obs(traffic), spec(abort=True), 10)
    assert r.state.phase is Phase.ABORTED
    assert r.state.weights == {"base": 100, "w8a8": 0}
    assert kinds(r) == [(ActionKind.REMOVE_CANARY, "w8a8")]
    assert step(r.state, obs(traffic), spec(abort=True), 20).events == ()
    restarted = step(r.state, obs(traffic), s, 30)
    assert restarted.state.phase is Phase.CANARY
    assert "RolloutStarted" in reasons(restarted)


def test_removing_the_rollout_mid_way_aborts_it() -> None:
    traffic = Traffic()
    st = run_to_first_step(spec(), traffic)
    r = step(st, obs(traffic), None, 10)
    assert (r.state.phase, r.state.reason) == (Phase.ABORTED, "RolloutRemoved")
    assert r.state.weights["base"] == 100


def test_a_new_target_replaces_the_running_canary() -> None:
    traffic = Traffic()
    st = run_to_first_step(spec(), traffic)
    r = step(st, obs(traffic, canary_ready=False), spec(target_variant="w4a16", revision="r9"), 10)
    assert (ActionKind.REMOVE_CANARY, "w8a8") in kinds(r)
    assert r.state.target_variant == "w4a16"
    assert r.state.phase is Phase.CANARY
    assert r.state.weights == {"base": 100, "w4a16": 0}


def test_a_new_revision_restarts_a_rolled_back_rollout() -> None:
    traffic = Traffic()
    st = run_to_first_step(spec(), traffic)
    traffic.serve("w8a8", 30, errors=30)
    st = step(st, obs(traffic), spec(), 5).state
    assert st.phase is Phase.ROLLED_BACK
    r = step(st, obs(traffic, canary_ready=False), spec(revision="r2"), 10)
    assert r.state.phase is Phase.CANARY
    assert r.state.revision == "r2"


def test_a_gateway_restart_mid_step_restarts_the_window_instead_of_failing() -> None:
    s = spec()
    traffic = Traffic()
    traffic.serve("base", 1000)
    traffic.serve("w8a8", 100)
    st = run_to_first_step(s, traffic)
    fresh = Traffic()  # counters back at zero
    fresh.serve("base", 200)
    fresh.serve("w8a8", 25)
    r = step(st, obs(fresh), s, 61)
    assert r.state.last_analysis is not None
    assert r.state.last_analysis.canary_requests == 25
    assert r.state.weights["w8a8"] == 50


def test_nothing_to_roll_out_when_the_target_is_already_stable() -> None:
    r = step(new_state("base"), obs(Traffic()), spec(target_variant="base"), 0)
    assert r.state == new_state("base")
    assert r.actions == () and r.events == ()


def test_state_round_trips_through_status_json_in_camel_case() -> None:
    s = spec()
    traffic = Traffic()
    st = run_to_first_step(s, traffic)
    traffic.serve("base", 300)
    traffic.serve("w8a8", 30)
    st = step(st, obs(traffic), s, 30).state
    dumped = json.loads(json.dumps(st.to_dict()))
    assert {"stableVariant", "targetVariant", "stepIndex", "lastAnalysis", "weights"} <= set(dumped)
    assert RolloutState.from_dict(dumped) == st


@pytest.mark.parametrize("steps", [(), (50, 25), (0, 100), (10, 110), (10, 10)])
def test_bad_traffic_steps_are_refused(steps: tuple[int, ...]) -> None:
    with pytest.raises(ValidationError, match="steps"):
        spec(steps=steps)


def test_a_reused_artifact_is_an_artifact_reused_event_naming_it() -> None:
    s = spec()
    r = step(new_state("base"), Observation(compression=JobObservation(state=JobState.RUNNING)), s, 0)
    result = {"artifact": "/models/compressed/.artifacts/chat--ab/W8A8--cd", "reused": True, "sizeBytes": 1}
    reused = JobObservation(state=JobState.SUCCEEDED, message=json.dumps(result))
    r = step(r.state, Observation(compression=reused), s, 1)
    assert r.state.phase is Phase.EVALUATING
    assert reasons(r) == ["ArtifactReused", "EvaluationStarted"]
    assert "/models/compressed/.artifacts/chat--ab/W8A8--cd" in r.events[0].message
    fresh = JobObservation(state=JobState.SUCCEEDED, message=json.dumps({**result, "reused": False}))
    r = step(step(new_state("base"), Observation(), s, 0).state, Observation(compression=fresh), s, 1)
    assert reasons(r)[0] == "CompressionSucceeded" and "W8A8--cd" in r.events[0].message
