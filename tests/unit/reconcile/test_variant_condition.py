"""The VariantReady condition says which step the rollout's target is at, with the numbers (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dialogue_operator.reconcile import ModelObject
from dialogue_operator.reconcile.core import reconcile
from dialogue_operator.reconcile.observed import Observed
from dialogue_operator.reconcile.variant_condition import variant_condition
from dialogue_operator.settings import Settings

from tests.unit.reconcile.conftest import model_body

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REUSED = {"artifact": "/models/compressed/.artifacts/chat--1/W8A8--2", "reused": True, "timingsSeconds": {"a": 1}}
PASSED = {"state": "Succeeded", "eligible": True, "recovery": 0.995, "agreement": 0.93, "threshold": 0.9}


def chat(rollout_status: dict[str, Any] | None, target: str | None = "w8a8", **variant: Any) -> ModelObject:
    spec: dict[str, Any] = {
        "model": {"source": "pvc://models/smollm2"},
        "variants": [
            {
                "name": "w8a8",
                "compression": {"scheme": "W8A8", "calibration": {"numSamples": 32}},
                "qualityGate": {"minRecovery": 0.95},
                **variant,
            }
        ],
    }
    if target is not None:
        spec["rollout"] = {"targetVariant": target, "steps": [50, 100]}
    body = model_body(spec)
    if rollout_status is not None:
        body["status"] = {"rollout": {"targetVariant": "w8a8", "stableVariant": "base", **rollout_status}}
    return ModelObject.from_body(body)


def test_no_condition_without_a_rollout() -> None:
    assert variant_condition(chat(None, target=None)) is None
    assert variant_condition(chat(None, target="base")) is None


def test_compressing_names_scheme_calibration_and_job() -> None:
    status, reason, message = variant_condition(chat({"phase": "Compressing"})) or ("", "", "")
    assert (status, reason) == ("False", "Compressing")
    assert message.startswith("w8a8: compressing W8A8 (GPTQ calibration on 32 samples of builtin:chat; Job chat-w8a8-")
    assert "-compress-" in message
    assert variant_condition(chat(None))[:2] == ("False", "Pending")  # type: ignore[index]


def test_a_running_jobs_live_step_is_in_the_message() -> None:
    running = {"state": "Running", "step": "quantize (W8A8, 32 samples)"}
    _, reason, message = variant_condition(chat({"phase": "Compressing", "compression": running})) or ("",) * 3
    assert reason == "Compressing" and message.endswith(", now: quantize (W8A8, 32 samples))"), message
    assert "steps in its log" not in message
    compression = {"state": "Succeeded", "message": json.dumps(REUSED)}
    gate = {"state": "Running", "step": "variant (/models/compressed/x)"}
    evaluating = chat({"phase": "Evaluating", "compression": compression, "evaluation": gate})
    _, reason, message = variant_condition(evaluating) or ("",) * 3
    assert reason == "Evaluating" and ", now: variant (/models/compressed/x)); artifact reused" in message, message


def test_evaluating_says_the_gate_and_that_the_artifact_was_reused() -> None:
    compression = {"state": "Succeeded", "message": json.dumps(REUSED)}
    status, reason, message = variant_condition(chat({"phase": "Evaluating", "compression": compression})) or ("",) * 3
    assert (status, reason) == ("False", "Evaluating")
    assert "builtin:default, minRecovery 0.95" in message and "-evaluate-" in message
    assert "artifact reused from /models/compressed/.artifacts/chat--1/W8A8--2 (nothing compressed)" in message


def test_canary_and_promoted_are_true_with_the_gate_numbers() -> None:
    rollout = {"phase": "Canary", "stepIndex": 0, "weights": {"base": 50, "w8a8": 50}, "evaluation": PASSED}
    status, reason, message = variant_condition(chat(rollout)) or ("",) * 3
    assert (status, reason) == ("True", "Canary")
    assert "step 1/2 at 50%" in message and "recovery 0.995 (min 0.9), agreement 0.93" in message
    promoted = variant_condition(chat({"phase": "Promoted", "stableVariant": "w8a8", "weights": {"w8a8": 100}}))
    assert promoted == ("True", "Promoted", "w8a8 is the stable variant")


def test_failures_quote_the_reason_and_the_numbers() -> None:
    refused = {
        "phase": "Failed",
        "reason": "QualityGateFailed",
        "message": "quality gate refused w8a8: recovery 0.41, agreement 0.2, threshold 0.95",
    }
    status, reason, message = variant_condition(chat(refused)) or ("",) * 3
    assert (status, reason) == ("False", "QualityGateFailed") and "recovery 0.41" in message
    slow = {
        "phase": "RolledBack",
        "reason": "AnalysisFailed",
        "message": "step 1 at 50%: TTFT p95 0.900 s / stable 0.100 s = 9.00 > maxTtftP95Ratio 1.5",
    }
    status, reason, message = variant_condition(chat(slow)) or ("",) * 3
    assert (status, reason) == ("False", "RolledBack")
    assert message.startswith("w8a8 rolled back, base serves: AnalysisFailed: step 1 at 50%: TTFT p95 0.900 s")


def test_a_failed_job_gives_the_condition_its_own_reason() -> None:
    full = {
        "phase": "Failed",
        "reason": "StorageFull",
        "message": "compression of w8a8 failed: StorageFull: no space left on the output volume for the w8a8 "
        "artifact: need ~178.3 MiB, 47.9 MiB free at /models/compressed/.artifacts",
    }
    status, reason, message = variant_condition(chat(full)) or ("",) * 3
    assert (status, reason) == ("False", "StorageFull")
    assert message == f"w8a8 gets no traffic: {full['message']}"


def test_reconcile_adds_the_condition_and_leaves_ready_to_the_pods() -> None:
    refused = {"phase": "Failed", "reason": "QualityGateFailed", "message": "recovery 0.4", "weights": {"base": 100}}
    plan = reconcile(chat(refused), Observed(children={}, pods=()), Settings(), NOW)
    conditions = {c["type"]: c for c in plan.status["conditions"]}
    assert conditions["VariantReady"]["reason"] == "QualityGateFailed"
    assert conditions["VariantReady"]["status"] == "False"
    assert conditions["Ready"]["reason"] != "QualityGateFailed"  # the base's pods decide Ready
    none = reconcile(chat(None, target=None), Observed(children={}, pods=()), Settings(), NOW)
    assert "VariantReady" not in {c["type"] for c in none.status["conditions"]}
