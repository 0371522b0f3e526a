"""Job and Pod objects to observations: states, quoted termination messages, crash loops."""

from __future__ import annotations

import json
from typing import Any

from dialogue_operator.rollout import JobState, Observation, Phase, RolloutSpec, new_state, step
from dialogue_operator.rollout.observe import (
    as_written,
    canary_status,
    compression_observation,
    current_step,
    evaluation_observation,
    failure_reason,
    running_pod,
)


def pod(message: str = "", exit_code: int = 0, restarts: int = 0, waiting: str = "", ready: bool = False) -> Any:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {}
    if message and not waiting:
        state = {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": "2026-01-01T00:00:00Z"}}
    last = {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": "2026-01-01T00:00:00Z"}}
    return {
        "metadata": {"name": "p-1"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"restartCount": restarts, "state": state, "lastState": last if waiting else {}}],
        },
    }


FAILED_JOB = {
    "status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
}
DONE_JOB = {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}


def test_compression_failure_quotes_the_jobs_own_line() -> None:
    line = "InvalidRecipe: group size 128 does not divide the model's hidden_size 576"
    obs = compression_observation(FAILED_JOB, [pod(line, exit_code=1)])
    assert (obs.state, obs.message) == (JobState.FAILED, line)
    assert compression_observation(None, []).state is JobState.ABSENT
    assert compression_observation({"status": {"active": 1}}, []).state is JobState.RUNNING
    assert "BackoffLimitExceeded" in compression_observation(FAILED_JOB, []).message


def test_the_jobs_own_reason_is_split_off_its_line_and_the_message_stays_whole() -> None:
    line = "CalibrationSetMissing: calibration set not found: /models/calib/missing.jsonl"
    obs = compression_observation(FAILED_JOB, [pod(line, exit_code=1)])
    assert (obs.state, obs.reason, obs.message) == (JobState.FAILED, "CalibrationSetMissing", line)
    golden = evaluation_observation(FAILED_JOB, [pod("GoldenSetMissing: golden set not found: /golden/g.jsonl")])
    assert (golden.state, golden.reason) == (JobState.FAILED, "GoldenSetMissing")
    assert failure_reason("StorageFull: no space left on the output volume at /models") == "StorageFull"
    assert failure_reason("ModelNotFound: model folder not found: /models/x") == "ModelNotFound"
    # No reason: the Job controller's own failure, a log tail, a Python exception, prose, JSON.
    assert compression_observation(FAILED_JOB, []).reason is None
    assert failure_reason("compress: load ...\nTraceback (most recent call last):\nKeyError: 'x'") is None
    assert failure_reason("KeyError: 'model.layers.0'") is None
    assert failure_reason("DialogueModel ns/chat: compressed variants need a pvc:// model source") is None
    assert failure_reason("no space left on device") is None
    assert failure_reason('{"eligible": true}') is None
    assert compression_observation(DONE_JOB, [pod('{"reused": true}')]).reason is None


def test_paths_in_a_jobs_message_are_named_as_the_spec_writes_them() -> None:
    refs = {"/models/calib/missing.jsonl": "pvc://models/calib/missing.jsonl", "/golden/g.jsonl": "pvc://gold/g.jsonl"}
    line = "CalibrationSetMissing: calibration set not found: /models/calib/missing.jsonl"
    assert as_written(line, refs) == (
        "CalibrationSetMissing: calibration set not found: pvc://models/calib/missing.jsonl "
        "(in the Job: /models/calib/missing.jsonl)"
    )
    assert as_written("golden set /golden/g.jsonl line 3: not JSON.", refs) == (
        "golden set pvc://gold/g.jsonl (in the Job: /golden/g.jsonl) line 3: not JSON."
    )
    untouched = "cannot read /models/calib/missing.jsonl.bak or /x/models/calib/missing.jsonl"
    assert as_written(untouched, refs) == untouched, "only whole paths are replaced"
    assert as_written(line, {}) == line


def test_evaluation_verdict_is_read_from_the_termination_json() -> None:
    verdict = {"eligible": False, "recovery": 0.12, "agreement": 0.1, "threshold": 0.9,
               "reasons": ["recovery 0.120 < threshold 0.9"]}  # fmt: skip
    obs = evaluation_observation(DONE_JOB, [pod(json.dumps(verdict))])
    assert (obs.state, obs.eligible, obs.recovery) == (JobState.SUCCEEDED, False, 0.12)
    unreadable = evaluation_observation(DONE_JOB, [pod("not json")])
    assert unreadable.state is JobState.FAILED, "a verdict that cannot be read never passes"
    spec = RolloutSpec(target_variant="w8a8", needs_compression=True, quality_gate=True)
    result = step(new_state("base"), Observation(compression=compression_observation(DONE_JOB, []), evaluation=obs),
                  spec, 0.0)  # fmt: skip
    assert result.state.phase is Phase.FAILED
    assert "recovery 0.12" in result.state.message


def test_crash_looping_and_ready_pods() -> None:
    looping = pod("CUDA error: out of memory", exit_code=1, restarts=4, waiting="CrashLoopBackOff")
    ready, crash, why = canary_status([looping, pod(ready=True)])
    assert (ready, crash) == (True, True)
    assert "restarted 4 times" in why and "out of memory" in why
    assert canary_status([pod(ready=True)]) == (True, False, "")
    assert canary_status([]) == (False, False, "")


def test_the_current_step_is_the_last_progress_line_of_the_log_tail() -> None:
    log = "evaluate: golden ... (/golden.jsonl)\nevaluate: golden done in 0.0 s\nevaluate: base ... (8 dialogues)\n"
    assert current_step(log) == "base (8 dialogues)"
    assert current_step(log + "100%|#####| 8/8 [00:03<00:00]\nevaluate: base done in 3.1 s\n") == "base (8 dialogues)"
    assert current_step("compress: score ...\n") == "score"
    assert current_step("Traceback (most recent call last):\n  ...\n") == ""
    assert current_step("") == ""
    long = current_step(f"compress: save ... ({'x' * 500})")
    assert long.startswith("save (xxx") and long.endswith("...)") and len(long) < 200


def test_the_pod_whose_log_is_read_is_the_newest_running_one() -> None:
    def pod(name: str, phase: str, created: str) -> dict[str, object]:
        return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"phase": phase}}

    assert running_pod([]) is None
    assert (
        running_pod([pod("a", "Failed", "2026-01-01T00:00:00Z"), pod("b", "Pending", "2026-01-01T00:01:00Z")]) is None
    )
    pods = [pod("a", "Running", "2026-01-01T00:00:00Z"), pod("b", "Running", "2026-01-01T00:01:00Z")]
    assert running_pod(pods) == "b"
