"""Builds the local cluster's binaries (etcd, Kubernetes, kwok, helm) from Go source into a version-keyed cache.

`ensure_all()` is the `cluster` step of `python -m e2e.setup`. Each tool lands in
`$DIALOGUE_CACHE/bin/<tool>-<version>/` with a `build.json` recording how long its cold build took; a tool whose
directory is complete is skipped. Builds write into a temporary directory that is renamed into place, so a killed
build never leaves a half-filled cache.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from e2e.setup import SetupError

KUBERNETES_VERSION = "v1.35.4"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.19.5"
ETCD_VERSION = "v3.6.5"
KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
KWOK_PACKAGE = "sigs.k8s.io/kwok/cmd/kwok"
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
ETCD_PACKAGE = "go.etcd.io/etcd/server/v3"
GOBUILD = Path(__file__).resolve().parent / "gobuild"
GOBUILD_KUBERNETES = GOBUILD / "kubernetes"
GOBUILD_ETCD = GOBUILD / "etcd"
BUILD_INFO = "build.json"
STAGES_FILE = "stages.yaml"
# Stage documents taken from kwok's `kustomize/stage/` folder: nodes become Ready and heartbeat, pods become
# Ready (with an IP from the node's podCIDR), complete, and go away when deleted.
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat/node-heartbeat.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
_BUILD_DATE = "2026-01-01T00:00:00Z"
_GO_OUTPUT_LINES = 15


def cache_root() -> Path:
    """The per-machine cache shared by every setup step (`DIALOGUE_CACHE`, default ~/.cache/dialogue-operator)."""
    return Path(os.environ.get("DIALOGUE_CACHE") or Path.home() / ".cache" / "dialogue-operator").expanduser()


def bin_dir(tool: str, version: str, cache: Path | None = None) -> Path:
    return (cache or cache_root()) / "bin" / f"{tool}-{version}"


@dataclass(frozen=True)
class Binaries:
    """Where each cluster binary lives; `missing()` names those not built yet."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    kwok_stages: Path
    helm: Path
    etcd: Path
    kubelet: Path

    def missing(self) -> list[str]:
        return [str(p) for p in vars(self).values() if not Path(p).is_file()]


def binaries(cache: Path | None = None) -> Binaries:
    k8s = bin_dir("kubernetes", KUBERNETES_VERSION, cache)
    kwok = bin_dir("kwok", KWOK_VERSION, cache)
    return Binaries(
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        kubectl=k8s / "kubectl",
        kwok=kwok / "kwok",
        kwok_stages=kwok / STAGES_FILE,
        helm=bin_dir("helm", HELM_VERSION, cache) / "helm",
        etcd=bin_dir("etcd", ETCD_VERSION, cache) / "etcd",
        kubelet=bin_dir("kubelet", KUBERNETES_VERSION, cache) / "kubelet",
    )


def read_build_info(tool: str, version: str, cache: Path | None = None) -> dict[str, object] | None:
    """The recorded cold build of a tool (seconds, date, Go version), or None when none was recorded."""
    path = bin_dir(tool, version, cache) / BUILD_INFO
    try:
        info: dict[str, object] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise SetupError(
            "the Go toolchain (`go`) is not on PATH; the local cluster is built from Go source. "
            "Install Go 1.25 or newer and rerun `python -m e2e.setup cluster`."
        )
    return go


def _go_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env.update(extra or {})
    return env


def _module_of(output: str, default: str) -> str:
    """The module go complained about (`go: k8s.io/kubernetes@v1.2.3: ...`), else `default`."""
    found = re.findall(r"([\w.\-]+\.[a-z]{2,}(?:/[\w.\-~]+)*@v[\w.\-+]+)", output)
    return found[-1] if found else default


def _run_go(args: list[str], *, what: str, module: str, cwd: Path | None, env: dict[str, str]) -> float:
    """Runs one go command; returns its duration or raises SetupError quoting go's last lines."""
    started = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise SetupError(f"could not run {args[0]} for {what}: {exc}") from exc
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        lines = list(dict.fromkeys(output.splitlines()))  # go repeats the same error per package
        tail = "\n".join(lines[-_GO_OUTPUT_LINES:])
        culprit = _module_of(output, module)
        raise SetupError(
            f"building {what} failed (`{' '.join(args[:2])}` exited {proc.returncode} after {elapsed:.0f} s); "
            f"module: {culprit}. Last lines of go's output:\n{tail}\n"
            f"What to do: check that {culprit} exists and that the Go module proxy "
            f"({env.get('GOPROXY') or 'go env GOPROXY'}) is reachable, then rerun `python -m e2e.setup cluster`."
        )
    return elapsed


def _install_dir(final: Path, build: Path) -> None:
    """Moves a finished temporary build directory into place."""
    if final.exists():  # a concurrent build finished first: keep theirs
        shutil.rmtree(build, ignore_errors=True)
        return
    build.chmod(0o755)  # mkdtemp made it private
    build.rename(final)


def _record(directory: Path, *, tool: str, version: str, seconds: float, files: list[str]) -> None:
    go_version = subprocess.run([_go(), "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
    info = {
        "tool": tool,
        "version": version,
        "seconds": round(seconds, 1),
        "built_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "go": go_version,
        "binaries": files,
        "cpus": os.cpu_count(),
        "load_average_after": round(os.getloadavg()[0], 1),  # this machine is shared: say how busy it was
    }
    (directory / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")


def _version_ldflags(version: str) -> str:
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+.*", version)
    major, minor = match.groups() if match else ("0", "0")
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={_BUILD_DATE}",
        ]
    return " ".join(flags)


def _temp_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))


def _build_in_module(
    tool: str,
    version: str,
    *,
    module_dir: Path,
    module: str,
    pinned: str,
    packages: dict[str, str],
    ldflags: str,
    cache: Path | None,
    env: dict[str, str] | None,
) -> Path:
    """`go build` of `packages` (output name -> package) inside one of our consumer modules in `gobuild/`.

    The module pins `module` at `pinned`; another `version` builds from a temporary copy pinned to it.
    """
    final = bin_dir(tool, version, cache)
    if all((final / name).is_file() for name in packages):
        return final
    go = _go()
    go_env = _go_env(env)
    tmp = _temp_dir(final)
    what = f"{tool} {version} ({', '.join(packages)})"
    try:
        if version != pinned:
            copy = tmp / "module"
            shutil.copytree(module_dir, copy)
            edit = [go, "mod", "edit", f"-require={module}@{version}"]
            _run_go(edit, what=what, module=f"{module}@{version}", cwd=copy, env=go_env)
            module_dir = copy
        out = tmp / "bin"
        out.mkdir()
        # One `go build` for all: with several packages `-o dir/` names each binary after its package.
        target = str(out / next(iter(packages))) if len(packages) == 1 else str(out) + "/"
        seconds = _run_go(
            [go, "build", "-trimpath", "-ldflags", ldflags, "-o", target, *packages.values()],
            what=what,
            module=f"{module}@{version}",
            cwd=module_dir,
            env=go_env,
        )
        _record(out, tool=tool, version=version, seconds=seconds, files=list(packages))
        _install_dir(final, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def build_kubernetes(
    version: str = KUBERNETES_VERSION, *, cache: Path | None = None, env: dict[str, str] | None = None
) -> Path:
    """Builds kube-apiserver, kube-controller-manager, kube-scheduler and kubectl at `version` (cached)."""
    return _build_in_module(
        "kubernetes",
        version,
        module_dir=GOBUILD_KUBERNETES,
        module="k8s.io/kubernetes",
        pinned=KUBERNETES_VERSION,
        packages={cmd: f"k8s.io/kubernetes/cmd/{cmd}" for cmd in KUBERNETES_COMMANDS},
        ldflags=_version_ldflags(version),
        cache=cache,
        env=env,
    )


def build_kubelet(
    version: str = KUBERNETES_VERSION, *, cache: Path | None = None, env: dict[str, str] | None = None
) -> Path:
    """Builds the kubelet of the real node at `version`, from the same module as the control plane (cached on
    its own, so adding it did not invalidate the control plane's cached build)."""
    return _build_in_module(
        "kubelet",
        version,
        module_dir=GOBUILD_KUBERNETES,
        module="k8s.io/kubernetes",
        pinned=KUBERNETES_VERSION,
        packages={"kubelet": "k8s.io/kubernetes/cmd/kubelet"},
        ldflags=_version_ldflags(version),
        cache=cache,
        env=env,
    )


def build_etcd(version: str = ETCD_VERSION, *, cache: Path | None = None, env: dict[str, str] | None = None) -> Path:
    """Builds the etcd server at `version` (cached) from the consumer module `gobuild/etcd`."""
    return _build_in_module(
        "etcd",
        version,
        module_dir=GOBUILD_ETCD,
        module=ETCD_PACKAGE,
        pinned=ETCD_VERSION,
        packages={"etcd": ETCD_PACKAGE},
        ldflags="-s -w",
        cache=cache,
        env=env,
    )


def build_go_tool(
    tool: str,
    package: str,
    version: str,
    *,
    ldflags: str = "-s -w",
    cache: Path | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """`go install package@version` into the cache (for modules whose go.mod has no replace lines)."""
    final = bin_dir(tool, version, cache)
    if (final / tool).is_file():
        return final
    go = _go()
    tmp = _temp_dir(final)
    try:
        go_env = _go_env(env)
        go_env["GOBIN"] = str(tmp)
        seconds = _run_go(
            [go, "install", "-trimpath", "-ldflags", ldflags, f"{package}@{version}"],
            what=f"{tool} {version}",
            module=f"{package}@{version}",
            cwd=None,
            env=go_env,
        )
        _record(tmp, tool=tool, version=version, seconds=seconds, files=[tool])
        if tool == "kwok":
            _write_kwok_stages(tmp, version, go_env)
        _install_dir(final, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_kwok_stages(directory: Path, version: str, env: dict[str, str]) -> None:
    """Copies kwok's Stage documents from the module cache into one config file beside the binary."""
    modcache = subprocess.run([_go(), "env", "GOMODCACHE"], env=env, capture_output=True, text=True).stdout.strip()
    stage_root = Path(modcache) / f"sigs.k8s.io/kwok@{version}/kustomize/stage"
    docs = []
    for rel in KWOK_STAGES:
        path = stage_root / rel
        if not path.is_file():
            raise SetupError(f"kwok's Stage document {path} is missing from the Go module cache; rerun setup")
        docs.append(f"# from sigs.k8s.io/kwok@{version} kustomize/stage/{rel}\n" + path.read_text().strip() + "\n")
    (directory / STAGES_FILE).write_text("---\n".join(docs))


def build_kwok(version: str = KWOK_VERSION, **kw: object) -> Path:
    return build_go_tool("kwok", KWOK_PACKAGE, version, **kw)  # type: ignore[arg-type]


def build_helm(version: str = HELM_VERSION, **kw: object) -> Path:
    # Helm's Makefile stamps its version and the Kubernetes minor its client libraries support.
    ldflags = (
        f"-s -w -X helm.sh/helm/v3/internal/version.version={version} "
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean "
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34 "
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34"
    )
    return build_go_tool("helm", HELM_PACKAGE, version, ldflags=ldflags, **kw)  # type: ignore[arg-type]


def ensure_all() -> None:
    """Setup step `cluster`: etcd, Kubernetes, the kubelet, kwok and helm built (each skipped when already cached)."""
    steps = (
        ("etcd", build_etcd),
        ("Kubernetes", build_kubernetes),
        ("kubelet", build_kubelet),
        ("kwok", build_kwok),
        ("helm", build_helm),
    )
    for name, build in steps:
        started = time.monotonic()
        where = build()
        took = time.monotonic() - started
        if took > 1:
            print(f"setup: built {name} into {where} ({took:.0f} s)", flush=True)
    still_missing = binaries().missing()
    if still_missing:
        raise SetupError(f"after building, these are still missing: {', '.join(still_missing)}")
