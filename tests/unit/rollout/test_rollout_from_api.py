"""From the user's DialogueModel spec to the state machine's spec: what is compressed, gated, restarted."""

from __future__ import annotations

from typing import Any

from dialogue_operator.api import DialogueModelSpec
from dialogue_operator.rollout import Observation, Phase, new_state, step
from dialogue_operator.rollout.from_api import rollout_spec


def model_spec(rollout: dict[str, Any] | None, variants: list[dict[str, Any]] | None = None) -> DialogueModelSpec:
    raw: dict[str, Any] = {
        "model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
        "variants": variants
        if variants is not None
        else [
            {"name": "w8a8", "compression": {"scheme": "W8A8"}},
            {"name": "gptq", "source": "hf://org/model-gptq@main"},
            {"name": "fp8", "quantization": "fp8_per_tensor"},
        ],
    }
    if rollout is not None:
        raw["rollout"] = rollout
    return DialogueModelSpec.model_validate(raw)


def test_no_rollout_means_no_machine_spec() -> None:
    assert rollout_spec(model_spec(None)) is None


def test_a_compressed_variant_is_compressed_then_gated_with_the_users_plan() -> None:
    s = rollout_spec(
        model_spec(
            {
                "targetVariant": "w8a8",
                "steps": [5, 25, 25, 100],
                "stepDurationSeconds": 60,
                "stepRequests": 200,
                "analysis": {"maxTtftP95Ratio": 1.2, "maxErrorRate": 0.0, "minSamples": 30},
                "paused": True,
            }
        )
    )
    assert s is not None
    assert (s.needs_compression, s.quality_gate) == (True, True)
    assert s.steps == (5, 25, 100)
    assert (s.step_duration_s, s.step_requests, s.paused) == (60.0, 200, True)
    assert (s.analysis.max_ttft_p95_ratio, s.analysis.max_error_rate, s.analysis.min_samples) == (1.2, 0.0, 30)


def test_sources_are_gated_and_online_quantization_is_not() -> None:
    gptq = rollout_spec(model_spec({"targetVariant": "gptq"}))
    fp8 = rollout_spec(model_spec({"targetVariant": "fp8"}))
    assert gptq is not None and fp8 is not None
    assert (gptq.needs_compression, gptq.quality_gate) == (False, True)
    assert (fp8.needs_compression, fp8.quality_gate) == (False, False)


def test_revision_changes_with_the_recipe_not_with_pause_or_abort() -> None:
    plain = rollout_spec(model_spec({"targetVariant": "w8a8"}))
    paused = rollout_spec(model_spec({"targetVariant": "w8a8", "paused": True, "abort": True}))
    other_recipe = rollout_spec(
        model_spec({"targetVariant": "w8a8"}, [{"name": "w8a8", "compression": {"scheme": "W4A16", "groupSize": 64}}])
    )
    assert plain is not None and paused is not None and other_recipe is not None
    assert plain.revision == paused.revision
    assert plain.revision != other_recipe.revision


def test_the_adapted_spec_drives_the_machine() -> None:
    s = rollout_spec(model_spec({"targetVariant": "w8a8"}))
    assert s is not None
    result = step(new_state("base"), Observation(), s, 0.0)
    assert result.state.phase is Phase.COMPRESSING
