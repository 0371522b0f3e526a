"""Volume mounts for a container process: the launch script that bind-mounts them in a private mount namespace,
and the registry of mount-point paths the runner had to create on the host (e2e layer).

A container runs as `unshare -m --propagation private -- /bin/sh -c SCRIPT podrunner ARGV...`: SCRIPT
bind-mounts each volume at its mountPath (visible to that process tree only), changes to the working directory
and execs ARGV, so the container's main process keeps the pid the runner spawned.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.cluster.podrunner.envvars import expand
from e2e.cluster.podrunner.volumes import VolumeError

READ_ONLY_KINDS = ("configMap", "secret", "projected", "downwardAPI")


@dataclass(frozen=True)
class Mount:
    """One bind mount: host `source` at `target` inside the container's mount namespace."""

    source: Path
    target: Path
    read_only: bool = False

    @property
    def is_file(self) -> bool:
        return self.source.is_file()


def container_mounts(
    pod: Mapping[str, Any], container: Mapping[str, Any], volume_paths: Mapping[str, Path], env: Mapping[str, str]
) -> list[Mount]:
    """The container's volumeMounts as bind mounts (subPath/subPathExpr resolved; configMap, secret, projected and
    downwardAPI volumes are read-only, as on a kubelet). Raises VolumeError."""
    mounts: list[Mount] = []
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        name = str(mount["name"])
        if name not in volume_paths:
            raise VolumeError(f"volumeMount {name} of container {container.get('name')} names no volume of the pod")
        source = volume_paths[name]
        sub_path = str(mount.get("subPath") or "") or expand(str(mount.get("subPathExpr") or ""), env)
        if sub_path:
            if ".." in Path(sub_path).parts or Path(sub_path).is_absolute():
                raise VolumeError(f"volumeMount {name}: subPath {sub_path!r} must be relative, without '..'")
            source = source / sub_path
            if not source.exists():
                source.mkdir(parents=True, exist_ok=True)
        read_only = bool(mount.get("readOnly")) or any(k in volumes.get(name, {}) for k in READ_ONLY_KINDS)
        mounts.append(Mount(source, Path(str(mount["mountPath"])), read_only))
    return mounts


def launch_argv(mounts: Sequence[Mount], workdir: str, argv: Sequence[str]) -> list[str]:
    """The full command line that runs `argv` with `mounts` in place and `workdir` as its directory."""
    lines = []
    # Shallow targets first so a mount nested under another volume lands inside it.
    for mount in sorted(mounts, key=lambda m: len(m.target.parts)):
        src, dst = shlex.quote(str(mount.source)), shlex.quote(str(mount.target))
        create = f"[ -e {dst} ] || touch {dst}" if mount.is_file else f"[ -e {dst} ] || mkdir -p {dst}"
        fail = f'{{ echo "podrunner: cannot mount {mount.source} at {mount.target}" >&2; exit 128; }}'
        lines.append(f"{create} && mount -n --bind {src} {dst} || {fail}")
        if mount.read_only:
            lines.append(f"mount -n -o remount,bind,ro {dst} || {fail}")
    wd = shlex.quote(workdir)
    lines.append(f'cd {wd} || {{ echo "podrunner: working directory {workdir} is missing" >&2; exit 128; }}')
    lines.append('exec "$@"')
    script = "\n".join(lines)
    return ["unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", script, "podrunner", *argv]


class MountPoints:
    """Creates missing mount-point paths on the host, shared by reference count, removed when the last user goes.

    Bind mounts need an existing target; a private mount namespace still shares the host's directory tree.
    Only components the runner created are removed, and only while empty.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[Path, set[str]] = {}
        self._created: dict[Path, list[Path]] = {}

    def acquire(self, user: str, mounts: Iterable[Mount]) -> None:
        with self._lock:
            for mount in _outermost(mounts):
                target = mount.target
                if target not in self._users:
                    self._users[target] = set()
                    self._created[target] = _create(target, mount.is_file)
                self._users[target].add(user)

    def release(self, user: str) -> None:
        with self._lock:
            for target in [t for t, users in self._users.items() if user in users]:
                self._users[target].discard(user)
                if self._users[target]:
                    continue
                del self._users[target]
                for path in reversed(self._created.pop(target, [])):
                    with contextlib.suppress(OSError):  # not empty any more, or already gone: leave it
                        if path.is_dir() and not path.is_symlink():
                            path.rmdir()
                        elif path.is_file() and path.stat().st_size == 0:
                            path.unlink()

    def in_use(self) -> dict[Path, set[str]]:
        with self._lock:
            return {k: set(v) for k, v in self._users.items()}


def _outermost(mounts: Iterable[Mount]) -> list[Mount]:
    """Mounts not nested under another mount's target: those nested are created inside the volume instead."""
    listed = list(mounts)
    targets = [m.target for m in listed]
    return [m for m in listed if not any(t != m.target and m.target.is_relative_to(t) for t in targets)]


def _create(target: Path, is_file: bool) -> list[Path]:
    """Create `target` (a file or a directory) and missing parents; returns what was created, outermost first."""
    missing: list[Path] = []
    probe = target
    while not probe.exists() and not probe.is_symlink():
        missing.append(probe)
        probe = probe.parent
    missing.reverse()
    for path in missing:
        if path == target and is_file:
            path.touch()
        else:
            path.mkdir(exist_ok=True)
    return missing
