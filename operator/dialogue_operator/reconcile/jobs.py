"""Builds the compression and evaluation Jobs of a compressed variant (pure): names, args, volumes, hardening.

Where things live on the model volume (mounted at /models, read-write for these Jobs):
- artifacts: `/models/compressed/.artifacts/<base folder slug>--<base id>/<recipe>--<recipe id>/` (content-addressed
  by the job itself on the base and the recipe only: the same base and recipe are never compressed twice, even
  for two DialogueModels);
- the serving path of a variant: `/models/compressed/<model>-<variant>`, a symlink the compression Job points
  at its artifact (the path `engine_config.build_engine_config` gives the variant's pods);
- evaluation results: `/models/compressed/.evaluations/<model>-<variant>.json`, base scores cached beside.
Job names carry a hash of their arguments: Job templates are immutable, so a changed recipe is a new Job.
Both Jobs write a one-line termination message: JSON on success (`artifact`/`reused`, or `eligible`/
`recovery`/`agreement`), `<Reason>: <message>` on failure (see dialogue_runtime.compress.job).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from dialogue_runtime import contract

from dialogue_operator.api.serving import BUILTIN_GOLDEN_SET
from dialogue_operator.reconcile.deployment import gpu_affinity
from dialogue_operator.reconcile.engine_config import model_volume, variant_source
from dialogue_operator.reconcile.labels import common_labels, metadata
from dialogue_operator.reconcile.model import InvalidSpec, ModelObject

COMPRESSED_DIR = f"{contract.MODEL_CACHE_MOUNT}/compressed"
ARTIFACTS_DIR = f"{COMPRESSED_DIR}/.artifacts"
EVALUATIONS_DIR = f"{COMPRESSED_DIR}/.evaluations"
VARIANT_SOURCE_MOUNT = "/variant-models"
COMPONENT_COMPRESS = "compress"
COMPONENT_EVALUATE = "evaluate"
COMPRESS_DEADLINE_S = 6 * 3600
EVALUATE_DEADLINE_S = 3600
GOLDEN_SET_MOUNT = "/golden"
_MAX_NAME = 63


@dataclass(frozen=True)
class Mount:
    """A PersistentVolumeClaim mounted into a Job's container."""

    name: str
    claim: str
    mount_path: str
    read_only: bool = False

    def volume_mount(self) -> dict[str, Any]:
        return {"name": self.name, "mountPath": self.mount_path, **({"readOnly": True} if self.read_only else {})}

    def volume(self) -> dict[str, Any]:
        claim: dict[str, Any] = {"claimName": self.claim, **({"readOnly": True} if self.read_only else {})}
        return {"name": self.name, "persistentVolumeClaim": claim}


def serving_path(model: ModelObject, variant: str) -> str:
    """Where the variant's pods find its compressed weights (a symlink to the artifact)."""
    return f"{COMPRESSED_DIR}/{model.name}-{variant}"


def evaluation_result_path(model: ModelObject, variant: str) -> str:
    return f"{EVALUATIONS_DIR}/{model.name}-{variant}.json"


def _job_name(model: ModelObject, variant: str, kind: str, args: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(args).encode()).hexdigest()[:8]
    suffix = f"-{kind}-{digest}"
    stem = f"{model.name}-{variant}"[: _MAX_NAME - len(suffix)].rstrip("-")
    return stem + suffix


def _base_volume(model: ModelObject) -> tuple[str, str]:
    """(claim, base path in the container): the Jobs read the base from, and write artifacts to, its PVC."""
    volume = model_volume(model, model.spec.model.source)
    if volume.claim is None or volume.local_path is None:
        raise InvalidSpec(
            f"DialogueModel {model.namespace}/{model.name}: compressed variants need a pvc:// model source (the "
            "compression Job reads the base weights there and stores the artifact beside them)"
        )
    return volume.claim, volume.local_path


def _calibration_arg(model: ModelObject, claim: str, dataset: str) -> tuple[str, list[Mount]]:
    """The job's --calibration value and any extra read-only mount a pvc:// calibration file needs."""
    if dataset.startswith("builtin:"):
        return dataset, []
    if not dataset.startswith("pvc://"):
        raise InvalidSpec(
            f"DialogueModel {model.namespace}/{model.name}: calibration dataset {dataset!r} is "
            "neither builtin:<name> nor pvc://claim/path"
        )
    cal_claim, _, path = dataset.removeprefix("pvc://").partition("/")
    if cal_claim == claim:
        return f"{contract.MODEL_CACHE_MOUNT}/{path}", []
    return f"/calibration/{path}", [Mount("calibration", cal_claim, "/calibration", read_only=True)]


def _job(  # noqa: PLR0917 - private; both public builders pass every part explicitly
    model: ModelObject,
    variant: str,
    kind: str,
    image: str,
    args: list[str],
    mounts: list[Mount],
    deadline_s: int,
    gpus: int,
) -> dict[str, Any]:
    labels = {**common_labels(model), contract.LABEL_COMPONENT: kind, contract.LABEL_VARIANT: variant}
    container: dict[str, Any] = {
        "name": kind,
        "image": image,
        "command": ["python3", "-m", f"dialogue_runtime.{'compress' if kind == COMPONENT_COMPRESS else 'evaluate'}"],
        "args": args,
        "env": [
            {"name": "HF_HOME", "value": "/tmp/hf"},  # noqa: S108 - the root filesystem is read-only
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
        ],
        "resources": {"limits": {contract.GPU_RESOURCE: str(gpus)}} if gpus else {},
        "terminationMessagePath": contract.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [*(m.volume_mount() for m in mounts), {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "tolerations": [
            {"key": contract.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
            *model.spec.scheduling.tolerations,
        ],
        "volumes": [*(m.volume() for m in mounts), {"name": "tmp", "emptyDir": {}}],
    }
    # The Jobs run where the model's pods may run (same node labels, taints and GPU product).
    if model.spec.scheduling.node_selector:
        pod_spec["nodeSelector"] = dict(sorted(model.spec.scheduling.node_selector.items()))
    affinity = gpu_affinity(model)
    if affinity is not None:
        pod_spec["affinity"] = affinity
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(model, _job_name(model, variant, kind, args), labels),
        "spec": {
            "backoffLimit": 0,  # failures are deterministic (recipe, data, space); the condition says why
            "activeDeadlineSeconds": deadline_s,
            "template": {"metadata": {"labels": dict(sorted(labels.items()))}, "spec": pod_spec},
        },
    }


def build_compression_job(model: ModelObject, variant: str, image: str) -> dict[str, Any]:
    """The Job that runs llm-compressor for `variant`'s recipe (or reuses the artifact) and links it."""
    spec = model.spec.variant(variant)
    if spec is None or spec.compression is None:
        raise InvalidSpec(f"DialogueModel {model.namespace}/{model.name}: variant {variant!r} has no compression")
    recipe = spec.compression
    claim, base_path = _base_volume(model)
    args = ["--base", base_path, "--scheme", recipe.scheme, "--output-root", ARTIFACTS_DIR]
    args += ["--link", serving_path(model, variant)]  # the artifact is shared; the link is this variant's
    if recipe.group_size is not None:
        args += ["--group-size", str(recipe.group_size)]
    extra: list[Mount] = []
    if recipe.calibration is not None:
        calibration, extra = _calibration_arg(model, claim, recipe.calibration.dataset)
        args += ["--calibration", calibration]
        args += ["--num-calibration-samples", str(recipe.calibration.num_samples)]
        args += ["--max-seq-length", str(recipe.calibration.max_sequence_length)]
    mounts = [Mount("models", claim, contract.MODEL_CACHE_MOUNT), *extra]
    gpus = min(model.spec.resources.gpus, 1)
    return _job(model, variant, COMPONENT_COMPRESS, image, args, mounts, COMPRESS_DEADLINE_S, gpus)


def _golden_arg(model: ModelObject, claim: str, golden_set: str) -> tuple[str, list[Mount]]:
    """The job's --golden value (`default` or a path) and any read-only mount a pvc:// golden set needs."""
    if golden_set == BUILTIN_GOLDEN_SET:
        return "default", []
    if not golden_set.startswith("pvc://"):
        raise InvalidSpec(
            f"DialogueModel {model.namespace}/{model.name}: golden set {golden_set!r} is neither "
            f"{BUILTIN_GOLDEN_SET} nor pvc://claim/path"
        )
    golden_claim, _, path = golden_set.removeprefix("pvc://").partition("/")
    if golden_claim == claim:
        return f"{contract.MODEL_CACHE_MOUNT}/{path}", []
    return f"{GOLDEN_SET_MOUNT}/{path}", [Mount("golden", golden_claim, GOLDEN_SET_MOUNT, read_only=True)]


def paths_as_written(model: ModelObject, variant: str) -> dict[str, str]:
    """{path in the Job: reference in the spec} for the variant's pvc:// calibration and golden sets, so a
    condition quoting a Job's error (`calibration set not found: /models/calib/x.jsonl`) can name what the user
    wrote (`pvc://models/calib/x.jsonl`). Empty when the spec has no such reference or the Jobs cannot be built."""
    spec = model.spec.variant(variant)
    if spec is None:
        return {}
    written: dict[str, str] = {}
    try:
        claim, _ = _base_volume(model)
        calibration = spec.compression.calibration if spec.compression is not None else None
        if calibration is not None and calibration.dataset.startswith("pvc://"):
            written[_calibration_arg(model, claim, calibration.dataset)[0]] = calibration.dataset
        if spec.gated and spec.gate.golden_set.startswith("pvc://"):
            written[_golden_arg(model, claim, spec.gate.golden_set)[0]] = spec.gate.golden_set
    except InvalidSpec:
        return {}  # the Jobs are not built either; the condition quotes InvalidSpec's own message
    return written


def build_evaluation_job(model: ModelObject, variant: str, image: str) -> dict[str, Any]:
    """The Job that scores `variant` against the base on the golden dialogues (the quality gate), with the
    threshold, agreement floor, golden set and dialogue count of the variant's `qualityGate`."""
    spec = model.spec.variant(variant)
    if spec is None or not spec.gated:
        raise InvalidSpec(
            f"DialogueModel {model.namespace}/{model.name}: variant {variant!r} has no checkpoint "
            "to evaluate (only compressed and pvc:// pre-quantized variants are gated)"
        )
    claim, base_path = _base_volume(model)
    mounts = [Mount("models", claim, contract.MODEL_CACHE_MOUNT)]
    if spec.compression is not None:
        variant_path = serving_path(model, variant)
    else:
        volume = model_volume(model, variant_source(model, variant))
        if volume.claim is None or volume.local_path is None:
            raise InvalidSpec(
                f"DialogueModel {model.namespace}/{model.name}: the quality gate needs variant "
                f"{variant!r} on a pvc:// source"
            )
        variant_path = volume.local_path
        if volume.claim != claim:
            variant_path = variant_path.replace(contract.MODEL_CACHE_MOUNT, VARIANT_SOURCE_MOUNT, 1)
            mounts.append(Mount("variant", volume.claim, VARIANT_SOURCE_MOUNT, read_only=True))
    gate = spec.gate
    golden, golden_mounts = _golden_arg(model, claim, gate.golden_set)
    mounts += golden_mounts
    args = ["--base", base_path, "--variant", variant_path, "--golden", golden, "--threshold", str(gate.min_recovery)]
    if gate.min_agreement is not None:
        args += ["--min-agreement", str(gate.min_agreement)]
    if gate.max_dialogues is not None:
        args += ["--limit", str(gate.max_dialogues)]
    args += ["--output", evaluation_result_path(model, variant), "--cache-dir", f"{EVALUATIONS_DIR}/cache"]
    gpus = min(model.spec.resources.gpus, 1)
    return _job(model, variant, COMPONENT_EVALUATE, image, args, mounts, EVALUATE_DEADLINE_S, gpus)
