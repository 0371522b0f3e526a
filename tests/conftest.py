"""Shared pytest fixtures: the local Kubernetes cluster (session-scoped), a namespace per test, and a diagnostics
dump (`kubectl get all`, events, component log tails) attached to the report of a failed test that used them.

The session reuses a cluster that is already up (`python -m e2e.cluster up`); otherwise it brings one up and
takes it down at the end. Several pytest sessions may share one cluster: the last one to leave a cluster that a
pytest session started takes it down.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from e2e.cluster.harness import LocalCluster
from e2e.cluster.procs import ClusterError
from e2e.cluster.sharing import shared_cluster

pytest_plugins = ["tests.interrupt"]  # a SIGTERM tears fixtures down (the cluster, started processes)

DIAGNOSTICS_KEY = pytest.StashKey[str]()
NAMESPACE_KEY = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """The local cluster: `.kubeconfig`, `.kubectl(*args, check=True, input=None)`, `.api_server_url`,
    `.state_dir`, and the whole LocalCluster API (nodes, pids, logs)."""
    local = LocalCluster(out=lambda line: print(f"[cluster] {line}", flush=True))
    missing = local.bins.missing()
    if missing:
        pytest.fail(
            "the local cluster's binaries are missing (" + ", ".join(missing) + "): "
            "run `python -m e2e.setup cluster` (make test does it first)",
            pytrace=False,
        )
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(shared_cluster(local))
        except ClusterError as exc:
            pytest.fail(f"the local cluster did not come up: {exc}", pytrace=False)
        yield local


def _wait(predicate: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    """Polls `predicate` until it is true; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@pytest.fixture
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount ready) for one test; deleted afterwards."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    request.node.stash[NAMESPACE_KEY] = name
    _wait(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout_s=60,
        what=f"ServiceAccount default in namespace {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def diagnostics(cluster: LocalCluster, namespace: str | None) -> str:
    """What a person debugging a failed cluster test looks at first."""
    parts = []

    def section(title: str, *args: str) -> None:
        try:
            proc = cluster.kubectl(*args, check=False, timeout_s=30)
            parts.append(f"--- {title} ---\n{(proc.stdout + proc.stderr).strip()}")
        except Exception as exc:  # diagnostics must never hide the test's own failure
            parts.append(f"--- {title} --- (failed: {exc})")

    section("kubectl get all -A -o wide", "get", "all", "-A", "-o", "wide")
    section("nodes", "get", "nodes", "-o", "wide", "--no-headers")
    if namespace:
        section(f"events in {namespace}", "get", "events", "-n", namespace, "--sort-by=.lastTimestamp")
    section("recent events (all namespaces)", "get", "events", "-A", "--sort-by=.lastTimestamp")
    for component in cluster.components():
        if cluster.layout.log(component).exists():
            parts.append(f"--- {component} log (last 20 lines) ---\n{cluster.log_tail(component, 20)}")
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed and "cluster" in getattr(item, "fixturenames", ()):
        local = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None  # type: ignore[attr-defined]
        if isinstance(local, LocalCluster) and not item.stash.get(DIAGNOSTICS_KEY, ""):
            text = diagnostics(local, item.stash.get(NAMESPACE_KEY, None))
            item.stash[DIAGNOSTICS_KEY] = text
            report.sections.append(("cluster diagnostics", text))
            out = local.state_dir / "diagnostics"
            out.mkdir(exist_ok=True)
            (out / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', item.nodeid)[-150:]}.txt").write_text(text)
    return report
