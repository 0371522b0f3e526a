"""Pure builders: DialogueModel spec and observed children in, desired children and status out."""

from dialogue_operator.reconcile.children import build_config_map, build_network_policy, build_pdb, build_service
from dialogue_operator.reconcile.core import EventNote, Plan, reconcile, variant_weights
from dialogue_operator.reconcile.deployment import build_deployment
from dialogue_operator.reconcile.engine_config import build_engine_config
from dialogue_operator.reconcile.model import InvalidSpec, ModelObject, ReconcileError
from dialogue_operator.reconcile.observed import Observed, PodSummary

__all__ = [
    "EventNote",
    "InvalidSpec",
    "ModelObject",
    "Observed",
    "Plan",
    "PodSummary",
    "ReconcileError",
    "build_config_map",
    "build_deployment",
    "build_engine_config",
    "build_network_policy",
    "build_pdb",
    "build_service",
    "reconcile",
    "variant_weights",
]
