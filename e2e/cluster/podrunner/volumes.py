"""Pod volumes as host directories: configMap, secret, projected (token, ca.crt, namespace), downwardAPI,
emptyDir, hostPath and persistentVolumeClaim (e2e I/O layer).

Rule for a PersistentVolumeClaim: bound to a PersistentVolume with `hostPath` or `local` -> that path; otherwise
`<state-dir>/pvc/<namespace>/<claim>` (so it outlives the pod, like a real volume).
`materialize()` is idempotent: called again it refreshes contents (a rotated token, an edited ConfigMap).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.cluster.podrunner.envvars import ContainerConfigError, field_value, resource_value
from e2e.cluster.podrunner.kubeapi import ApiError, KubeClient

DEFAULT_MODE = 0o644
TOKEN_DEFAULT_EXPIRATION_S = 3607
SHM_ROOT = Path("/dev/shm")


class VolumeError(RuntimeError):
    """A volume cannot be set up yet (missing object, wrong hostPath type); the kubelet's FailedMount."""


@dataclass
class _Token:
    value: str
    refresh_at: float


@dataclass
class PodVolumes:
    """The host directories behind one pod's volumes."""

    client: KubeClient
    pod_dir: Path
    state_dir: Path
    shm_dir: Path | None
    clock: Callable[[], float] = time.time
    paths: dict[str, Path] = field(default_factory=dict)
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _written: dict[str, set[Path]] = field(default_factory=dict)

    def materialize(self, pod: Mapping[str, Any]) -> dict[str, Path]:
        """Create or refresh every volume; returns volume name -> host path. Raises VolumeError."""
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = str(volume["name"])
            self.paths[name] = self._one(pod, name, volume)
        return dict(self.paths)

    def cleanup(self) -> None:
        """Remove what the pod owned: its emptyDirs and rendered files (hostPath and PVC data stay)."""
        for path in (self.pod_dir / "volumes", self.shm_dir):
            if path is not None and path.exists():
                shutil.rmtree(path, ignore_errors=True)

    def _one(self, pod: Mapping[str, Any], name: str, volume: Mapping[str, Any]) -> Path:
        namespace = pod["metadata"]["namespace"]
        if "emptyDir" in volume:
            medium = (volume["emptyDir"] or {}).get("medium", "")
            base = self.shm_dir if medium == "Memory" and self.shm_dir is not None else self.pod_dir / "volumes"
            path = base / name
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)
            return path
        if "hostPath" in volume:
            return host_path_volume(volume["hostPath"], name)
        if "persistentVolumeClaim" in volume:
            return self._claim(namespace, str(volume["persistentVolumeClaim"]["claimName"]))
        target = self.pod_dir / "volumes" / name
        files: dict[str, tuple[bytes, int]] = {}
        if "configMap" in volume:
            files = self._configmap_files(namespace, volume["configMap"], name)
        elif "secret" in volume:
            ref = dict(volume["secret"])
            ref.setdefault("name", ref.get("secretName", ""))
            files = self._secret_files(namespace, ref, name)
        elif "downwardAPI" in volume:
            files = downward_files(pod, volume["downwardAPI"], volume["downwardAPI"].get("defaultMode", DEFAULT_MODE))
        elif "projected" in volume:
            files = self._projected_files(pod, volume["projected"], name)
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise VolumeError(f"volume {name}: unsupported volume type {kinds} on the process-backed node")
        self._write(name, target, files)
        return target

    def _claim(self, namespace: str, claim: str) -> Path:
        pvc = self.client.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        volume_name = (pvc.get("spec") or {}).get("volumeName")
        if volume_name:
            pv = self.client.get_or_none(f"/api/v1/persistentvolumes/{volume_name}") or {}
            spec = pv.get("spec") or {}
            local = (spec.get("hostPath") or {}).get("path") or (spec.get("local") or {}).get("path")
            if local:
                Path(local).mkdir(parents=True, exist_ok=True)
                return Path(local)
        path = self.state_dir / "pvc" / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _configmap_files(self, namespace: str, ref: Mapping[str, Any], volume: str) -> dict[str, tuple[bytes, int]]:
        obj = self.client.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{ref.get('name', '')}")
        data: dict[str, bytes] | None = None
        if obj is not None:
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return key_files(data, ref, f'configmap "{ref.get("name", "")}"', volume)

    def _secret_files(self, namespace: str, ref: Mapping[str, Any], volume: str) -> dict[str, tuple[bytes, int]]:
        obj = self.client.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{ref.get('name', '')}")
        data = None if obj is None else {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return key_files(data, ref, f'secret "{ref.get("name", "")}"', volume)

    def _projected_files(
        self, pod: Mapping[str, Any], projected: Mapping[str, Any], volume: str
    ) -> dict[str, tuple[bytes, int]]:
        namespace = pod["metadata"]["namespace"]
        mode = int(projected.get("defaultMode", DEFAULT_MODE))
        files: dict[str, tuple[bytes, int]] = {}
        for source in projected.get("sources") or []:
            if "configMap" in source:
                ref = {"defaultMode": mode, **source["configMap"]}
                files.update(self._configmap_files(namespace, ref, volume))
            elif "secret" in source:
                ref = {"defaultMode": mode, **source["secret"]}
                files.update(self._secret_files(namespace, ref, volume))
            elif "downwardAPI" in source:
                files.update(downward_files(pod, source["downwardAPI"], mode))
            elif "serviceAccountToken" in source:
                token_source = source["serviceAccountToken"]
                files[str(token_source.get("path", "token"))] = (self._token(pod, token_source).encode(), mode)
        return files

    def _token(self, pod: Mapping[str, Any], source: Mapping[str, Any]) -> str:
        meta = pod["metadata"]
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        audience = source.get("audience")
        key = f"{account}/{audience}"
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and now < cached.refresh_at:
            return cached.value
        expiration_s = int(source.get("expirationSeconds") or TOKEN_DEFAULT_EXPIRATION_S)
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": expiration_s,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
        try:
            answer = self.client.request("POST", path, body=body)
        except ApiError as exc:
            raise VolumeError(f"requesting a token for serviceaccount {meta['namespace']}/{account}: {exc}") from exc
        # Refresh at 80 % of the requested lifetime, as the kubelet does (the server may grant more).
        self._tokens[key] = _Token(str(answer["status"]["token"]), now + 0.8 * expiration_s)
        return self._tokens[key].value

    def _write(self, volume: str, target: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
        target.mkdir(parents=True, exist_ok=True)
        written: set[Path] = set()
        for relative, (content, mode) in files.items():
            path = target / relative
            if ".." in Path(relative).parts or Path(relative).is_absolute():
                raise VolumeError(f"volume {volume}: item path {relative!r} must be relative, without '..'")
            path.parent.mkdir(parents=True, exist_ok=True)
            written.add(path)
            if path.is_file() and path.read_bytes() == content and (path.stat().st_mode & 0o7777) == mode:
                continue
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(content)
            tmp.chmod(mode)
            os.replace(tmp, path)  # atomic: a reader sees the old or the new file, never half of one
        for stale in self._written.get(volume, set()) - written:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        self._written[volume] = written


def key_files(
    data: Mapping[str, bytes] | None, ref: Mapping[str, Any], what: str, volume: str
) -> dict[str, tuple[bytes, int]]:
    mode = int(ref.get("defaultMode", DEFAULT_MODE))
    if data is None:
        if ref.get("optional"):
            return {}
        raise VolumeError(f"MountVolume.SetUp failed for volume {volume!r}: {what} not found")
    items = ref.get("items")
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = str(item["key"])
        if key not in data:
            if ref.get("optional"):
                continue
            raise VolumeError(f"MountVolume.SetUp failed for volume {volume!r}: {what} has no key {key!r}")
        files[str(item.get("path") or key)] = (data[key], int(item.get("mode", mode)))
    return files


def downward_files(pod: Mapping[str, Any], spec: Mapping[str, Any], mode: int) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    containers = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
    for item in spec.get("items") or []:
        try:
            if "fieldRef" in item:
                value = field_value(pod, str(item["fieldRef"].get("fieldPath", "")))
            else:
                ref = item.get("resourceFieldRef") or {}
                container = containers.get(ref.get("containerName", ""), {})
                value = resource_value(container, ref, {})
        except ContainerConfigError as exc:
            raise VolumeError(f"downwardAPI item {item.get('path')}: {exc}") from exc
        files[str(item["path"])] = (value.encode(), int(item.get("mode", mode)))
    return files


def host_path_volume(spec: Mapping[str, Any], name: str) -> Path:
    path = Path(str(spec["path"]))
    kind = spec.get("type") or ""
    if kind in ("", "DirectoryOrCreate") and not path.exists():
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    checks = {"Directory": path.is_dir, "File": path.is_file, "Socket": path.is_socket}
    if kind in checks and not checks[kind]():
        raise VolumeError(f"volume {name}: hostPath {path} is not a {kind.lower()}")
    if kind in ("CharDevice", "BlockDevice") and not path.exists():
        raise VolumeError(f"volume {name}: hostPath {path} does not exist")
    return path


def memory_dir(node: str, pod: Mapping[str, Any]) -> Path | None:
    """Where the pod's `emptyDir: {medium: Memory}` volumes live (tmpfs), or None when it has none."""
    uses_memory = any(
        (v.get("emptyDir") or {}).get("medium") == "Memory" for v in (pod.get("spec") or {}).get("volumes") or []
    )
    if not uses_memory or not SHM_ROOT.is_dir():
        return None
    return SHM_ROOT / "dialogue-podrunner" / node / str(pod["metadata"]["uid"])
