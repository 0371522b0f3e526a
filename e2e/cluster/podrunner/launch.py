"""What a container starts with, worked out from the pod spec before any process exists: the image's local
environment, the kubelet's env and command line, the bind mounts and the working directory (e2e layer)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.cluster import images
from e2e.cluster.podrunner import envvars
from e2e.cluster.podrunner.kubeapi import ApiError
from e2e.cluster.podrunner.mounts import Mount, container_mounts
from e2e.cluster.podrunner.volumes import VolumeError


class LaunchError(Exception):
    """The container cannot be created yet; `reason` is the waiting reason the kubelet would show."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LaunchPlan:
    image: images.LocalImage
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    workdir: str
    workdir_on_host: bool  # no workingDir in the spec: the pod's own folder, a host path
    start_error: str  # the kubelet's StartError message when the command cannot be found, else ""


@dataclass(frozen=True)
class PodContext:
    """What the plan needs besides the container: the pod as the downward API sees it and the node's facts."""

    pod: Mapping[str, Any]
    repo_root: Path
    pod_dir: Path
    source: envvars.ObjectSource
    service_env: Mapping[str, str]
    allocatable: Mapping[str, str]
    host_env: Mapping[str, str]
    volume_paths: Mapping[str, Path]


def plan(ctx: PodContext, container: Mapping[str, Any]) -> LaunchPlan:
    """Raises LaunchError with reason ErrImagePull or CreateContainerConfigError."""
    try:
        image = images.resolve(str(container.get("image", "")), ctx.repo_root)
    except images.ImageNotAvailable as exc:
        raise LaunchError("ErrImagePull", str(exc)) from exc
    try:
        declared = envvars.container_env(ctx.pod, container, ctx.source, ctx.service_env, ctx.allocatable)
        mounts = container_mounts(ctx.pod, container, ctx.volume_paths, declared)
    except (envvars.ContainerConfigError, VolumeError, ApiError) as exc:
        raise LaunchError("CreateContainerConfigError", str(exc)) from exc
    env = {
        **ctx.host_env,
        "PATH": image.path,
        "HOSTNAME": ctx.pod["metadata"]["name"],
        **image.env,
        **declared,
    }
    argv = envvars.container_argv(container, declared, image.entrypoint, image.cmd)
    workdir = str(container.get("workingDir") or "")
    if not workdir:
        workdir = str(ctx.pod_dir / "work")
        Path(workdir).mkdir(parents=True, exist_ok=True)
    start_error = ""
    if not argv:
        start_error = "no command specified"
    elif "/" not in argv[0] and shutil.which(argv[0], path=image.path) is None:
        start_error = f'exec: "{argv[0]}": executable file not found in $PATH'
    return LaunchPlan(
        image=image,
        argv=argv,
        env=env,
        mounts=mounts,
        workdir=workdir,
        workdir_on_host=not container.get("workingDir"),
        start_error=start_error,
    )
