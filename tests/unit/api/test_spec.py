"""The pydantic models accept sensible specs and refuse what the CRD refuses, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from dialogue_operator.api import DialogueModelSpec, DialogueModelStatus, SimProfileSpec
from dialogue_runtime.engine.config import SimProfile
from pydantic import ValidationError


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"}}
    spec.update(overrides)
    return spec


def test_minimal_spec_gets_defaults() -> None:
    spec = DialogueModelSpec.model_validate(_spec())
    assert spec.engine.kind == "vllm"
    assert spec.resources.gpus == 1
    assert spec.security.network_policy is True
    assert spec.replicas is None and not spec.autoscaling_enabled


def test_camel_case_round_trip() -> None:
    raw = _spec(
        model={"source": "pvc://models/llama", "servedName": "llama", "maxContextTokens": 8192},
        resources={"gpus": 4, "gpuProduct": "NVIDIA-H100-80GB-HBM3", "sharedMemory": "8Gi", "cpu": 8},
        autoscaling={"minReplicas": 0, "maxReplicas": 4, "scaleToZeroAfterSeconds": 60},
        variants=[{"name": "fp8", "quantization": "fp8_per_tensor"}],
        rollout={"targetVariant": "fp8", "steps": [5, 50, 100]},
        security={"apiKeySecretRef": {"name": "keys"}},
    )
    spec = DialogueModelSpec.model_validate(raw)
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["model"]["servedName"] == "llama"
    assert dumped["security"]["apiKeySecretRef"] == {"name": "keys", "key": "api-key"}
    assert DialogueModelSpec.model_validate(dumped) == spec


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"replicas": 2, "autoscaling": {"maxReplicas": 3}}, "mutually exclusive"),
        ({"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}, "minReplicas"),
        ({"resources": {"gpus": 0}}, "gpus"),
        ({"resources": {"gpus": -1}}, "gpus"),
        ({"engine": {"args": ["--port=9000"]}}, "--port"),
        ({"engine": {"args": ["--api-key", "x"]}}, "--api-key"),
        ({"variants": [{"name": "q", "quantization": "int3"}]}, "quantization"),
        ({"variants": [{"name": "q"}]}, "exactly one"),
        ({"variants": [{"name": "q", "quantization": "fp8", "source": "hf://a/b"}]}, "exactly one"),
        ({"variants": [{"name": "base", "quantization": "fp8"}]}, "reserved"),
        ({"rollout": {"targetVariant": "nope"}}, "targetVariant"),
        ({"rollout": {"targetVariant": "base", "steps": [50, 10]}}, "steps"),
        ({"model": {"source": "http://example/model"}}, "source"),
        ({"model": {"source": "hf://no-revision-separator@"}}, "source"),
        ({"engine": {"kind": "sim"}, "resources": {"gpus": 0}, "unknownField": 1}, "unknownField"),
        ({"engine": {"sim": {"maxBatch": 4}}}, "sim"),
        ({"variants": [{"name": "q", "compression": {"scheme": "W2A16"}}]}, "scheme"),
        ({"variants": [{"name": "q", "quantization": "fp8", "qualityGate": {}}]}, "qualityGate needs a checkpoint"),
        ({"variants": [{"name": "q", "source": "hf://o/m", "qualityGate": {}}]}, "qualityGate needs a checkpoint"),
        (
            {"variants": [{"name": "q", "compression": {"scheme": "W8A8"}, "qualityGate": {"minRecovery": 0}}]},
            "minRecovery",
        ),
        (
            {"variants": [{"name": "q", "compression": {"scheme": "W8A8"}, "qualityGate": {"minRecovery": 1.1}}]},
            "minRecovery",
        ),
        (
            {"variants": [{"name": "q", "compression": {"scheme": "W8A8"}, "qualityGate": {"goldenSet": "s3://b/g"}}]},
            "goldenSet",
        ),
        ({"variants": [{"name": "q", "quantization": "fp8", "engine": {"args": ["--model=x"]}}]}, "--model"),
        ({"variants": [{"name": "q", "quantization": "fp8", "engine": {"kind": "sim"}}]}, "kind"),
        ({"variants": [{"name": "q", "quantization": "fp8", "engine": {"sim": {"maxBatch": 2}}}]}, "engine.kind sim"),
    ],
)
def test_invalid_specs_are_refused_naming_the_field(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as exc:
        DialogueModelSpec.model_validate(_spec(**overrides))
    assert needle in str(exc.value)


def test_variant_quality_gate_and_engine_override() -> None:
    variants = [
        {"name": "w4", "compression": {"scheme": "W4A16_ASYM", "groupSize": 64},
         "qualityGate": {"minRecovery": 0.85, "minAgreement": 0.7, "goldenSet": "pvc://store/gold.jsonl"}},
        {"name": "gptq", "source": "pvc://store/gptq", "qualityGate": {"maxDialogues": 8}},
        {"name": "slow", "quantization": "fp8_per_tensor",
         "engine": {"args": ["--max-num-seqs=4"], "sim": {"prefillTokensPerSecond": 100}}},
    ]  # fmt: skip
    spec = DialogueModelSpec.model_validate(_spec(engine={"kind": "sim"}, resources={"gpus": 0}, variants=variants))
    w4, gptq, slow = (spec.variant(n) for n in ("w4", "gptq", "slow"))
    assert w4 is not None and w4.gated and (w4.gate.min_recovery, w4.gate.min_agreement) == (0.85, 0.7)
    assert (
        gptq is not None and gptq.gated and gptq.gate.golden_set == "builtin:default" and gptq.gate.min_recovery == 0.9
    )
    assert slow is not None and not slow.gated and slow.engine is not None and slow.engine.sim is not None
    assert slow.engine.sim.prefill_tokens_per_s == 100
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["variants"][0]["qualityGate"]["goldenSet"] == "pvc://store/gold.jsonl"
    assert DialogueModelSpec.model_validate(dumped) == spec


def test_sim_engine_may_run_without_gpus() -> None:
    spec = DialogueModelSpec.model_validate(_spec(engine={"kind": "sim"}, resources={"gpus": 0}))
    assert spec.resources.gpus == 0


def test_model_source_forms() -> None:
    for source in (
        "hf://org/name",
        "hf://org/name@v1.0",
        "pvc://cache/models/llama",
        "pvc://cache",
        "pvc://cache/.hidden/m..v2",
        "s3://bucket-1/llama/8b",
    ):
        DialogueModelSpec.model_validate(_spec(model={"source": source}))


TRAVERSALS = ("pvc://claim/../../etc", "pvc://claim/a//b", "pvc://claim/", "pvc://claim/./m", "s3://bucket/a/../b")


@pytest.mark.parametrize("path", TRAVERSALS)
def test_paths_with_dot_dot_or_empty_segments_are_refused(path: str) -> None:
    """A `..`, `.` or empty segment would name a file outside the claim, or an ambiguous one, wherever it appears."""
    file = path.replace("s3://bucket", "pvc://files")  # calibration and golden sets live on claims only
    calib = {"dataset": file}
    gold = file
    cases = (
        ({"model": {"source": path}}, "model.source"),
        ({"variants": [{"name": "q", "source": path}]}, "variants.0.source"),
        ({"variants": [{"name": "q", "compression": {"scheme": "W8A8", "calibration": calib}}]}, "calibration.dataset"),
        (
            {"variants": [{"name": "q", "compression": {"scheme": "W8A8"}, "qualityGate": {"goldenSet": gold}}]},
            "goldenSet",
        ),
    )
    for overrides, field in cases:
        with pytest.raises(ValidationError) as exc:
            DialogueModelSpec.model_validate(_spec(**overrides))
        assert field in str(exc.value), (overrides, str(exc.value))


def test_sim_profile_mirrors_the_runtime_contract() -> None:
    assert set(SimProfileSpec.model_fields) == set(SimProfile.model_fields)


def test_status_parses_what_it_dumps() -> None:
    status = DialogueModelStatus.model_validate(
        {
            "observedGeneration": 3,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
            "variants": [{"name": "base", "weight": 100, "replicas": 1, "readyReplicas": 1, "phase": "Ready"}],
            "autoscaling": {"desiredReplicas": 2, "anything": "the autoscaler keeps"},
        }
    )
    assert status.condition("Ready") is not None
    assert DialogueModelStatus.model_validate(status.model_dump(by_alias=True)) == status
