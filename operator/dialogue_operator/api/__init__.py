"""The DialogueModel API: pydantic v2 models, the single source of truth for the CRD schema."""

from dialogue_operator.api.model import (
    OPERATOR_OWNED_FLAGS,
    EngineSpec,
    EnvVar,
    ModelSpec,
    ResourcesSpec,
    SchedulingSpec,
    SimProfileSpec,
)
from dialogue_operator.api.serving import (
    BASE_VARIANT,
    AnalysisSpec,
    AutoscalingSpec,
    CacheSpec,
    CalibrationSpec,
    CompressionSpec,
    DialogueSpec,
    QualityGateSpec,
    RolloutSpec,
    SecretKeyRef,
    SecuritySpec,
    VariantEngineSpec,
    VariantSpec,
)
from dialogue_operator.api.spec import DialogueModelSpec
from dialogue_operator.api.status import Condition, DialogueModelStatus, VariantStatus

__all__ = [
    "BASE_VARIANT",
    "OPERATOR_OWNED_FLAGS",
    "AnalysisSpec",
    "AutoscalingSpec",
    "CacheSpec",
    "CalibrationSpec",
    "CompressionSpec",
    "Condition",
    "DialogueModelSpec",
    "DialogueModelStatus",
    "DialogueSpec",
    "EngineSpec",
    "EnvVar",
    "ModelSpec",
    "QualityGateSpec",
    "ResourcesSpec",
    "RolloutSpec",
    "SchedulingSpec",
    "SecretKeyRef",
    "SecuritySpec",
    "SimProfileSpec",
    "VariantEngineSpec",
    "VariantSpec",
    "VariantStatus",
]
