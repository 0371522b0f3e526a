"""Volume mounts for a container process: the launch script that bind-mounts them in a private mount namespace,
and the registry of mount-point paths the runner had to create on the host (e2e layer).

A container runs as `unshare -m --propagation private -- /bin/sh -c SCRIPT podrunner ARGV...`: SCRIPT
bind-mounts each volume at its mountPath (visible to that process tree only), changes to the working directory
and execs ARGV, so the container's main process keeps the pid the runner spawned.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
        volume = volumes.get(name, {})
        read_only = (
            bool(mount.get("readOnly"))
            or any(k in volume for k in READ_ONLY_KINDS)
            or bool((volume.get("persistentVolumeClaim") or {}).get("readOnly"))
        )
        mounts.append(Mount(source, Path(str(mount["mountPath"])), read_only))
    return mounts


def launch_argv(
    mounts: Sequence[Mount],
    workdir: str,
    argv: Sequence[str],
    *,
    workdir_on_host: bool = False,
    keep_visible: Sequence[Path] = (),
) -> list[str]:
    """The full command line that runs `argv` with `mounts` in place and `workdir` as its directory.

    Every source (and a `workdir_on_host`) is opened first and mounted through its /proc/self/fd link: a mount
    over an ancestor of a source (an emptyDir at /tmp while the state directory is under /tmp) cannot hide it.
    `keep_visible` are host directories the image's environment lives in (the repository, the venv cache): one
    that a volume would hide (a checkout under /tmp, and an emptyDir at /tmp) is bound back at its own path.
    """
    lines = []
    fds: dict[int, int] = {}
    first_fd = 10
    hidden = [
        path
        for path in dict.fromkeys(keep_visible)
        if path.is_dir() and any(path.is_relative_to(m.target) for m in mounts)
    ]
    keep_fds = {path: first_fd + len(mounts) + 1 + i for i, path in enumerate(hidden)}
    for path, fd in keep_fds.items():
        lines.append(f"exec {fd}< {shlex.quote(str(path))} || exit 128")
    for index, mount in enumerate(mounts):
        if mount.source.is_dir() or mount.source.is_file():
            fds[index] = first_fd + index
            lines.append(f"exec {fds[index]}< {shlex.quote(str(mount.source))} || exit 128")
    wd_fd = first_fd + len(mounts)
    if workdir_on_host:
        lines.append(f"exec {wd_fd}< {shlex.quote(workdir)} || exit 128")
    # Shallow targets first so a mount nested under another volume lands inside it.
    order = sorted(range(len(mounts)), key=lambda i: len(mounts[i].target.parts))
    for index in order:
        mount = mounts[index]
        source = f"/proc/self/fd/{fds[index]}" if index in fds else shlex.quote(str(mount.source))
        dst = shlex.quote(str(mount.target))
        create = f"[ -e {dst} ] || touch {dst}" if mount.is_file else f"[ -e {dst} ] || mkdir -p {dst}"
        fail = f'{{ echo "podrunner: cannot mount {mount.source} at {mount.target}" >&2; exit 128; }}'
        lines.append(f"{{ {create}; }} && mount -n -c --bind {source} {dst} || {fail}")
        if mount.read_only:
            lines.append(f"mount -n -o remount,bind,ro {dst} || {fail}")
    for path, fd in keep_fds.items():
        dst = shlex.quote(str(path))
        fail = f'{{ echo "podrunner: cannot keep {path} visible under a volume" >&2; exit 128; }}'
        lines.append(f"{{ [ -d {dst} ] || mkdir -p {dst}; }} && mount -n -c --bind /proc/self/fd/{fd} {dst} || {fail}")
    missing = f'{{ echo "podrunner: working directory {workdir} is missing" >&2; exit 128; }}'
    if workdir_on_host:
        lines.append(f"cd -P /proc/self/fd/{wd_fd} || {missing}")
    else:
        lines.append(f"cd {shlex.quote(workdir)} || {missing}")
    lines.extend(f"exec {fd}<&-" for fd in [*fds.values(), *([wd_fd] if workdir_on_host else []), *keep_fds.values()])
    lines.append('exec "$@"')
    script = "\n".join(lines)
    return ["unshare", "-m", "--propagation", "private", "--", "/bin/bash", "-c", script, "podrunner", *argv]


class MountPoints:
    """Creates missing mount-point paths on the host and removes them when no container needs them any more.

    Bind mounts need an existing target, and a private mount namespace still shares the host's directory tree.
    Every runner on the machine shares one registry (a JSON file under a file lock): removing a directory that
    is a mount point in another process's namespace would silently detach that mount there (Linux >= 3.18), so a
    path goes only when no container of any live runner uses it. Only paths a runner created are removed, and only
    while empty; entries of runners that died are dropped at the next call.
    """

    def __init__(self, registry: Path | None = None, owner: int | None = None) -> None:
        self._registry = registry or default_registry()
        self._owner = owner if owner is not None else os.getpid()
        self._lock = threading.Lock()

    def acquire(self, user: str, mounts: Iterable[Mount]) -> None:
        with self._state() as state:
            for mount in _outermost(mounts):
                for path in _create(mount.target, mount.is_file):
                    if str(path) not in state["created"]:
                        state["created"].append(str(path))
                users = state["users"].setdefault(str(mount.target), [])
                if f"{self._owner}:{user}" not in users:
                    users.append(f"{self._owner}:{user}")

    def release(self, user: str) -> None:
        with self._state() as state:
            for users in state["users"].values():
                with contextlib.suppress(ValueError):
                    users.remove(f"{self._owner}:{user}")

    def sweep(self) -> None:
        """Drop what dead runners left behind (called at start-up)."""
        with self._state():
            pass

    def in_use(self) -> dict[str, list[str]]:
        with self._state() as state:
            return {k: list(v) for k, v in state["users"].items()}

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        self._registry.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self._registry.with_suffix(".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    state = json.loads(self._registry.read_text())
                except (OSError, ValueError):
                    state = {}
                state.setdefault("created", [])
                state.setdefault("users", {})
                yield state
                _sweep(state)
                tmp = self._registry.with_suffix(".tmp")
                tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
                os.replace(tmp, self._registry)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def default_registry() -> Path:
    """One registry per machine: /run when it is writable (tmpfs, gone after a reboot), else the temp dir."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    return base / "dialogue-podrunner" / "mount-points.json"


def _alive(user: str) -> bool:
    pid = user.split(":", 1)[0]
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _sweep(state: dict[str, Any]) -> None:
    """Forget users of dead runners; remove created paths (deepest first) that no live mount needs."""
    users: dict[str, list[str]] = state["users"]
    for target in list(users):
        users[target] = [u for u in users[target] if _alive(u)]
        if not users[target]:
            del users[target]
    in_use = [Path(t) for t in users]
    kept = []
    for raw in sorted(state["created"], key=lambda p: len(Path(p).parts), reverse=True):
        path = Path(raw)
        if any(t == path or t.is_relative_to(path) for t in in_use):
            kept.append(raw)
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()
            elif path.exists():
                continue  # something else lives there now: not ours to remove, stop tracking it
        except FileNotFoundError:
            continue
        except OSError:
            kept.append(raw)  # not empty (yet): try again next time
    state["created"] = sorted(kept)


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
