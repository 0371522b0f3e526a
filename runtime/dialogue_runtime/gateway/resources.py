"""Reads what the gateway needs from DialogueModel and Pod objects (plain dicts) into small frozen records (pure).

The runtime never imports the operator, so the fields are read here from the API objects as the API server
returns them (camelCase): `spec.model.servedName`, `spec.dialogue.{systemPrompt,historyTokenBudget}`,
`spec.security.apiKeySecretRef.{name,key}`, `spec.engine.args` (`--lora-modules name=path ...`), the
`Ready` condition, `status.variants[].{name,weight}` and `metadata.creationTimestamp`; on Pods the labels of
`contract.py`, `status.podIP`, the `Ready` condition, `metadata.deletionTimestamp` and the container port
named `http`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dialogue_runtime import contract
from dialogue_runtime.gateway.validation import Limits

BASE_VARIANT = "base"


@dataclass(frozen=True)
class SecretRef:
    """Where a model's API keys live: Secret `name`, data key `key`, in the model's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class ModelInfo:
    """What the gateway knows about one DialogueModel (or one `--static-model`)."""

    namespace: str
    name: str
    served_name: str
    weights: Mapping[str, float] = field(default_factory=dict)
    api_key_ref: SecretRef | None = None
    api_keys: frozenset[str] = frozenset()
    # Why the keys could not be read (Secret or key missing, unreadable): every request gets 503 with it, never
    # served without the key check.
    keys_problem: str | None = None
    system_prompt: str | None = None
    history_token_budget: int | None = None
    adapters: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)
    created: str = ""  # metadata.creationTimestamp: the older of two models claiming one served name holds it

    @property
    def ref(self) -> str:
        """`namespace/name` (just `name` for static models)."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Endpoint:
    """One runtime replica: its base URL and which model/variant it serves."""

    url: str
    namespace: str
    model: str
    variant: str
    pod: str = ""
    adapters: frozenset[str] | None = None  # None: unknown, assumed to serve every adapter of its model

    @property
    def model_ref(self) -> str:
        return f"{self.namespace}/{self.model}" if self.namespace else self.model


def _get(obj: Mapping[str, Any] | None, *path: str) -> Any:
    current: Any = obj
    for part in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def lora_adapters(engine_args: Any) -> frozenset[str]:
    """Adapter names from vLLM's `--lora-modules name=path [name=path ...]` in the engine args."""
    if not isinstance(engine_args, list):
        return frozenset()
    names: set[str] = set()
    collecting = False
    for arg in (str(a) for a in engine_args):
        if arg.startswith("--lora-modules"):
            collecting = True
            _, _, inline = arg.partition("=")
            if inline and "=" in inline:
                names.add(inline.split("=", 1)[0])
            continue
        if arg.startswith("--"):
            collecting = False
        elif collecting and "=" in arg:
            names.add(arg.split("=", 1)[0])
    return frozenset(names)


def parse_dialogue_model(obj: Mapping[str, Any], api_keys: frozenset[str] = frozenset()) -> ModelInfo:
    """A DialogueModel object -> ModelInfo; `api_keys` are the keys already read from its Secret."""
    namespace = str(_get(obj, "metadata", "namespace") or "")
    name = str(_get(obj, "metadata", "name") or "")
    served = _get(obj, "spec", "model", "servedName") or name
    weights: dict[str, float] = {}
    for variant in _get(obj, "status", "variants") or []:
        if isinstance(variant, Mapping) and isinstance(variant.get("name"), str):
            weight = variant.get("weight", 0)
            weights[variant["name"]] = float(weight) if isinstance(weight, int | float) else 0.0
    ref = _get(obj, "spec", "security", "apiKeySecretRef")
    secret = None
    if isinstance(ref, Mapping) and ref.get("name"):
        secret = SecretRef(str(ref["name"]), str(ref.get("key") or "api-key"))
    budget = _get(obj, "spec", "dialogue", "historyTokenBudget")
    prompt = _get(obj, "spec", "dialogue", "systemPrompt")
    return ModelInfo(
        namespace=namespace,
        name=name,
        served_name=str(served),
        weights=weights,
        api_key_ref=secret,
        api_keys=api_keys,
        system_prompt=prompt if isinstance(prompt, str) and prompt else None,
        history_token_budget=budget if isinstance(budget, int) and not isinstance(budget, bool) else None,
        adapters=lora_adapters(_get(obj, "spec", "engine", "args")),
        created=str(_get(obj, "metadata", "creationTimestamp") or ""),
    )


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for condition in _get(pod, "status", "conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def _pod_port(pod: Mapping[str, Any]) -> int:
    for container in _get(pod, "spec", "containers") or []:
        for port in (container.get("ports") or []) if isinstance(container, Mapping) else []:
            if isinstance(port, Mapping) and port.get("name") == contract.ENGINE_PORT_NAME:
                value = port.get("containerPort")
                if isinstance(value, int):
                    return value
    return contract.ENGINE_PORT


def parse_pod(pod: Mapping[str, Any]) -> Endpoint | None:
    """A runtime Pod -> its Endpoint when it may take traffic (Ready, has an IP, not terminating), else None."""
    labels = _get(pod, "metadata", "labels") or {}
    model = labels.get(contract.LABEL_MODEL) if isinstance(labels, Mapping) else None
    ip = _get(pod, "status", "podIP")
    if not model or not ip or _get(pod, "metadata", "deletionTimestamp") or not _pod_ready(pod):
        return None
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    return Endpoint(
        url=f"http://{host}:{_pod_port(pod)}",
        namespace=str(_get(pod, "metadata", "namespace") or ""),
        model=str(model),
        variant=str(labels.get(contract.LABEL_VARIANT) or BASE_VARIANT),
        pod=str(_get(pod, "metadata", "name") or ""),
    )


def parse_static_model(spec: str) -> tuple[ModelInfo, list[Endpoint]]:
    """`NAME=URL[,URL...]` (each URL optionally `VARIANT@URL`) -> a static model and its endpoints."""
    name, sep, urls = spec.partition("=")
    if not sep or not name or not urls:
        raise ValueError(f"--static-model expects NAME=URL[,URL...], got {spec!r}")
    endpoints: list[Endpoint] = []
    for item in urls.split(","):
        variant, at, url = item.strip().rpartition("@")
        if not at:
            variant, url = BASE_VARIANT, item.strip()
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--static-model {name}: endpoint {url!r} must start with http:// or https://")
        endpoints.append(Endpoint(url=url.rstrip("/"), namespace="", model=name, variant=variant or BASE_VARIANT))
    return ModelInfo(namespace="", name=name, served_name=name), endpoints
