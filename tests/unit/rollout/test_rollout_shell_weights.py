"""Before the rollout shell's first write, the reconcile warms an online-quantized target at weight 0, but never a
compressed one: its pods would start before the compression Job has made their weights."""

from __future__ import annotations

from typing import Any

from dialogue_operator.reconcile.core import variant_weights
from dialogue_operator.reconcile.model import ModelObject


def model_with(variant: dict[str, Any]) -> ModelObject:
    return ModelObject.from_body({
        "metadata": {"name": "chat", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {
            "model": {"source": "pvc://models/smollm2"},
            "variants": [{"name": "v", **variant}],
            "rollout": {"targetVariant": "v"},
        },
    })  # fmt: skip


def test_online_quantized_target_is_warmed_at_weight_zero() -> None:
    assert variant_weights(model_with({"quantization": "fp8"})) == {"base": 100, "v": 0}


def test_compressed_target_gets_no_deployment_before_its_job() -> None:
    assert variant_weights(model_with({"compression": {"scheme": "FP8_DYNAMIC"}})) == {"base": 100}
