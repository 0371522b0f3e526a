"""A container's environment and command line, computed from the pod spec like the kubelet does (pure).

Covers `$(VAR)` expansion (with `$$` escaping), `env` (literal values, `fieldRef`, `resourceFieldRef`,
`secretKeyRef`, `configMapKeyRef` with `optional`), `envFrom`, and the kubelet's service variables. Objects are
read through the `ObjectSource` callables so tests pass plain dicts.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dialogue_runtime.quantity import parse_quantity

Pod = Mapping[str, Any]
Container = Mapping[str, Any]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ContainerConfigError(ValueError):
    """The container cannot be configured (a referenced Secret/ConfigMap or key is missing): the kubelet's
    `CreateContainerConfigError`. The message is the one shown in the container's waiting state."""


@dataclass(frozen=True)
class ObjectSource:
    """Reads referenced objects: each returns None when the object does not exist."""

    secret: Callable[[str, str], Mapping[str, str] | None]  # (namespace, name) -> base64 `data`
    configmap: Callable[[str, str], Mapping[str, str] | None]  # (namespace, name) -> `data` (+ binaryData)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubelet `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`, anything else stays."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append(text[i:])
                break
            name = text[i + 2 : close]
            out.append(env[name] if name in env else text[i : close + 1])
            i = close + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def field_value(pod: Pod, path: str) -> str:
    """The downward-API value of `fieldRef.fieldPath` for this pod (status fields as the runner set them)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIPs": ",".join(p.get("ip", "") for p in status.get("podIPs") or []),
        "status.hostIPs": ",".join(p.get("ip", "") for p in status.get("hostIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    for prefix, key in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        values = meta.get(key) or {}
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(values.get(path[len(prefix) + 2 : -2], ""))
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(container: Container, ref: Mapping[str, Any], node_allocatable: Mapping[str, str]) -> str:
    """The value of a `resourceFieldRef` (limits fall back to the node's allocatable, as in the kubelet)."""
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise ContainerConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        raw = node_allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        raise ContainerConfigError(f"resourceFieldRef {resource} has a zero divisor")
    return str(math.ceil(parse_quantity(raw) / divisor))


def service_env(api_host: str, api_port: int) -> dict[str, str]:
    """The variables the kubelet gives every container for the `kubernetes` Service (here: the real server)."""
    return {
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": str(api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(api_port),
        "KUBERNETES_PORT": f"tcp://{api_host}:{api_port}",
        f"KUBERNETES_PORT_{api_port}_TCP": f"tcp://{api_host}:{api_port}",
        f"KUBERNETES_PORT_{api_port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{api_port}_TCP_PORT": str(api_port),
        f"KUBERNETES_PORT_{api_port}_TCP_ADDR": api_host,
    }


def _decode_secret(value: str, where: str) -> str:
    try:
        return base64.b64decode(value).decode("utf-8", errors="replace")
    except ValueError as exc:
        raise ContainerConfigError(f"{where} holds invalid base64") from exc


def _key_ref(pod: Pod, ref: Mapping[str, Any], kind: str, source: ObjectSource) -> str | None:
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    name = str(ref.get("name", ""))
    optional = bool(ref.get("optional", False))
    data = source.secret(namespace, name) if kind == "Secret" else source.configmap(namespace, name)
    if data is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    key = str(ref.get("key", ""))
    if key not in data:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    raw = data[key]
    return _decode_secret(raw, f"secret {namespace}/{name} key {key}") if kind == "Secret" else raw


def container_env(
    pod: Pod,
    container: Container,
    source: ObjectSource,
    service: Mapping[str, str],
    node_allocatable: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables the kubelet defines for the container, in its order: `service` variables, `envFrom`, then
    `env`, each `env` value `$(VAR)`-expanded against what came before it. The image's own variables are not
    included (the caller layers these on top of them). Raises ContainerConfigError."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    declared: dict[str, str] = dict(service)
    for env_from in container.get("envFrom") or []:
        prefix = str(env_from.get("prefix") or "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = env_from.get(key)
            if ref is None:
                continue
            name = str(ref.get("name", ""))
            data = source.secret(namespace, name) if kind == "Secret" else source.configmap(namespace, name)
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
            for data_key, raw in sorted(data.items()):
                var = prefix + data_key
                if not _ENV_NAME.match(var):
                    continue  # the kubelet skips invalid names (and records an event)
                value = _decode_secret(raw, f"secret {namespace}/{name}") if kind == "Secret" else raw
                declared[var] = value
    for item in container.get("env") or []:
        name = str(item["name"])
        if "value" in item or "valueFrom" not in item:
            value = expand(str(item.get("value") or ""), declared)
        else:
            value_from = item["valueFrom"]
            if "fieldRef" in value_from:
                value = field_value(pod, str(value_from["fieldRef"].get("fieldPath", "")))
            elif "resourceFieldRef" in value_from:
                value = resource_value(container, value_from["resourceFieldRef"], node_allocatable or {})
            elif "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
                kind = "Secret" if "secretKeyRef" in value_from else "ConfigMap"
                ref = value_from["secretKeyRef" if kind == "Secret" else "configMapKeyRef"]
                found = _key_ref(pod, ref, kind, source)
                if found is None:
                    continue
                value = found
            else:
                raise ContainerConfigError(f"env {name}: unsupported valueFrom {sorted(value_from)}")
        declared[name] = value
    return declared


def container_argv(
    container: Container, env: Mapping[str, str], image_entrypoint: tuple[str, ...], image_cmd: tuple[str, ...]
) -> list[str]:
    """The command line under the kubelet's rules: `command` replaces the image ENTRYPOINT (and drops its CMD),
    `args` replace CMD; both are `$(VAR)`-expanded with the container's environment."""
    command = container.get("command")
    args = container.get("args")
    if command:
        return [expand(str(part), env) for part in [*command, *(args or [])]]
    argv = [*image_entrypoint, *(args if args is not None else image_cmd)]
    return [expand(str(part), env) for part in argv]
