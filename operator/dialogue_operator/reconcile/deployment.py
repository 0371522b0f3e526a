"""Builds the runtime Deployment of one variant: GPU scheduling, probes, volumes, hardening (pure)."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from dialogue_runtime import contract

from dialogue_operator.api.common import quantity_str
from dialogue_operator.reconcile.engine_config import build_engine_config, model_volume
from dialogue_operator.reconcile.hashing import spec_hash, with_spec_hash
from dialogue_operator.reconcile.labels import child_name, metadata, runtime_labels, variant_selector
from dialogue_operator.reconcile.model import ModelObject
from dialogue_operator.settings import Settings

CONTAINER_NAME = "engine"
HEALTH_PATH = "/health"
CONFIG_VOLUME = "engine-config"
SHM_VOLUME = "dshm"
MODEL_VOLUME = "model-cache"
TMP_VOLUME = "tmp"
ANNOTATION_CONFIG_HASH = "dialogue.dev/config-hash"


def _env(model: ModelObject, variant: str, settings: Settings) -> list[dict[str, Any]]:
    """Operator-owned variables, then the user's, then the variant's (a later one of the same name wins); sorted."""
    env: dict[str, dict[str, Any]] = {
        contract.POD_IP_ENV: {
            "name": contract.POD_IP_ENV,
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
        },
        contract.ENGINE_CONFIG_ENV: {
            "name": contract.ENGINE_CONFIG_ENV,
            "value": f"{contract.ENGINE_CONFIG_DIR}/{contract.ENGINE_CONFIG_FILE}",
        },
        # The root filesystem is read-only: caches go to the tmp volume, downloaded weights to /models.
        "HOME": {"name": "HOME", "value": "/tmp"},  # noqa: S108 (a path inside the container)
        "XDG_CACHE_HOME": {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},  # noqa: S108
        "HF_HOME": {"name": "HF_HOME", "value": f"{contract.MODEL_CACHE_MOUNT}/huggingface"},
    }
    ref = model.spec.security.api_key_secret_ref
    if ref is not None:
        env[contract.ENGINE_API_KEY_ENV] = {
            "name": contract.ENGINE_API_KEY_ENV,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    variant_spec = model.spec.variant(variant)
    override = variant_spec.engine.env if variant_spec is not None and variant_spec.engine is not None else []
    for var in [*model.spec.engine.env, *override]:  # a variant's entry replaces the base's of the same name
        env[var.name] = var.model_dump(by_alias=True, exclude_none=True)
    return [env[name] for name in sorted(env)]


def _resources(model: ModelObject) -> dict[str, Any]:
    res = model.spec.resources
    limits: dict[str, str] = {}
    if res.gpus > 0:
        limits[contract.GPU_RESOURCE] = str(res.gpus)
    for key, value in (("cpu", res.cpu), ("memory", res.memory)):
        text = quantity_str(value)
        if text is not None:
            limits[key] = text
    if not limits:
        return {}
    return {"limits": dict(sorted(limits.items())), "requests": dict(sorted(limits.items()))}


def gpu_affinity(model: ModelObject) -> dict[str, Any] | None:
    """The user's affinity with the GPU product added to every required node selector term."""
    affinity = copy.deepcopy(model.spec.scheduling.affinity) if model.spec.scheduling.affinity else {}
    product = model.spec.resources.gpu_product
    if product is not None:
        expression = {"key": contract.GPU_PRODUCT_LABEL, "operator": "In", "values": [product]}
        node = affinity.setdefault("nodeAffinity", {})
        required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
        terms = required.setdefault("nodeSelectorTerms", [])
        if not terms:
            terms.append({})
        for term in terms:
            term.setdefault("matchExpressions", []).append(expression)
    return affinity or None


def _volumes(model: ModelObject, variant: str, settings: Settings) -> list[dict[str, Any]]:
    source = build_engine_config(model, variant, settings).source
    volume = model_volume(model, source)
    shm: dict[str, Any] = {"medium": "Memory"}
    shm_size = quantity_str(model.spec.resources.shared_memory)
    if shm_size is not None:
        shm["sizeLimit"] = shm_size
    cache: dict[str, Any]
    if volume.claim is not None:
        cache = {
            "name": MODEL_VOLUME,
            "persistentVolumeClaim": {"claimName": volume.claim, "readOnly": volume.read_only},
        }
    else:
        cache = {"name": MODEL_VOLUME, "emptyDir": {}}
    return [
        {"name": CONFIG_VOLUME, "configMap": {"name": child_name(model, variant)}},
        {"name": SHM_VOLUME, "emptyDir": shm},
        cache,
        {"name": TMP_VOLUME, "emptyDir": {}},
    ]


def config_hash(model: ModelObject, variant: str, settings: Settings) -> str:
    """Hash of the engine configuration a variant's pods read."""
    return spec_hash(json.loads(build_engine_config(model, variant, settings).model_dump_json()))


def _probe(settings: Settings, failure_threshold: int, period_s: int, timeout_s: int = 5) -> dict[str, Any]:
    return {
        "httpGet": {"path": HEALTH_PATH, "port": contract.ENGINE_PORT_NAME},
        "periodSeconds": period_s,
        "timeoutSeconds": timeout_s,
        "failureThreshold": failure_threshold,
    }


def build_deployment(model: ModelObject, variant: str, settings: Settings, replicas: int) -> dict[str, Any]:
    """The Deployment serving `variant` of `model` with `replicas` pods, with a spec-hash annotation."""
    spec = model.spec
    labels = runtime_labels(model, variant)
    volume = model_volume(model, build_engine_config(model, variant, settings).source)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.engine.image or settings.runtime_image,
        "command": ["python3", "-m", "dialogue_runtime.engine"],
        "env": _env(model, variant, settings),
        "ports": [{"name": contract.ENGINE_PORT_NAME, "containerPort": contract.ENGINE_PORT, "protocol": "TCP"}],
        "resources": _resources(model),
        "startupProbe": _probe(
            settings,
            max(1, math.ceil(settings.startup_budget_s / settings.startup_probe_period_s)),
            settings.startup_probe_period_s,
        ),
        "readinessProbe": _probe(settings, 3, 5),
        "livenessProbe": _probe(settings, 6, settings.probe_period_s),
        "terminationMessagePath": contract.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": CONFIG_VOLUME, "mountPath": contract.ENGINE_CONFIG_DIR, "readOnly": True},
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},  # noqa: S108
            {
                "name": MODEL_VOLUME,
                "mountPath": contract.MODEL_CACHE_MOUNT,
                **({"readOnly": True} if volume.read_only else {}),
            },
            {"name": TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108
        ],
    }
    tolerations = [
        {"key": contract.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
        *spec.scheduling.tolerations,
    ]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "terminationGracePeriodSeconds": settings.termination_grace_s,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "tolerations": tolerations,
        "volumes": _volumes(model, variant, settings),
    }
    affinity = gpu_affinity(model)
    if affinity is not None:
        pod_spec["affinity"] = affinity
    if spec.scheduling.node_selector:
        pod_spec["nodeSelector"] = dict(sorted(spec.scheduling.node_selector.items()))
    if spec.scheduling.priority_class_name:
        pod_spec["priorityClassName"] = spec.scheduling.priority_class_name
    if spec.scheduling.topology_spread_constraints:
        pod_spec["topologySpreadConstraints"] = list(spec.scheduling.topology_spread_constraints)
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(model, child_name(model, variant), labels),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": variant_selector(model, variant)},
            # One extra pod at a time, never fewer ready pods than asked: GPUs are scarce, downtime is worse.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": dict(sorted(labels.items())),
                    # engine.json is read at start: pods restart when the rendered configuration changes.
                    "annotations": {ANNOTATION_CONFIG_HASH: config_hash(model, variant, settings)},
                },
                "spec": pod_spec,
            },
        },
    }
    return with_spec_hash(deployment, pod_template=True)
