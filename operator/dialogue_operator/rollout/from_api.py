"""Adapter from the user-facing API to the state machine's spec (pure): `spec.rollout` + the target variant.

The revision is a hash of the target variant's definition and the rollout's traffic plan, so editing either
restarts a finished rollout, while re-applying the same spec never reruns one that was rolled back.
"""

from __future__ import annotations

import hashlib
import json

from dialogue_operator.api.spec import DialogueModelSpec
from dialogue_operator.rollout.model import AnalysisSpec, RolloutSpec


def rollout_spec(spec: DialogueModelSpec, quality_gate_for_sources: bool = True) -> RolloutSpec | None:
    """The machine's spec for `spec.rollout`, or None when the DialogueModel asks for no rollout.

    Compressed variants are compressed and then gated; pre-quantized sources are gated when
    `quality_gate_for_sources` (they are checkpoints the evaluation job can load); online quantization is
    applied by the engine at load time and has no checkpoint to gate.
    """
    rollout = spec.rollout
    if rollout is None:
        return None
    variant = spec.variant(rollout.target_variant)
    definition = variant.model_dump(mode="json", by_alias=True) if variant is not None else {"name": "base"}
    plan = rollout.model_dump(mode="json", by_alias=True, exclude={"paused", "abort"})
    revision = hashlib.sha256(json.dumps([definition, plan], sort_keys=True).encode()).hexdigest()[:16]
    needs_compression = variant is not None and variant.compression is not None
    gated = needs_compression or (quality_gate_for_sources and variant is not None and variant.source is not None)
    return RolloutSpec(
        target_variant=rollout.target_variant,
        revision=revision,
        steps=tuple(sorted(set(rollout.steps))),  # the API allows repeated weights; one step each is enough
        step_duration_s=float(rollout.step_duration_seconds),
        step_requests=rollout.step_requests,
        analysis=AnalysisSpec(
            max_ttft_p95_ratio=rollout.analysis.max_ttft_p95_ratio,
            max_error_rate=rollout.analysis.max_error_rate,
            min_samples=rollout.analysis.min_samples,
        ),
        paused=rollout.paused,
        abort=rollout.abort,
        needs_compression=needs_compression,
        quality_gate=gated,
    )
