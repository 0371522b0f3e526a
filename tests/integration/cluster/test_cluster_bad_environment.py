"""A bad environment gets a clear message that names what failed and what to do, never a traceback, and leaves
no process running: a port already in use, missing binaries, a failed Go build or module download, no Go toolchain."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.cluster import build
from e2e.cluster.harness import LocalCluster
from e2e.cluster.layout import REPO_ROOT
from e2e.cluster.procs import ClusterError, free_port_block
from e2e.setup import SetupError


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline[:200]}")
    return found


@pytest.fixture
def held_port() -> Iterator[tuple[socket.socket, int]]:
    """A listening socket on the first port of a block of six free ones (a cluster takes six)."""
    port = free_port_block()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield sock, port


def test_port_in_use_names_the_port_and_its_process_and_leaves_nothing_running(
    held_port: tuple[socket.socket, int], tmp_path: Path
) -> None:
    _, port = held_port
    state = tmp_path / "cluster"
    proc = _run(["-m", "e2e.cluster", "up", "--port-base", str(port)], {"DIALOGUE_CLUSTER_DIR": str(state)})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"port {port} (for kube-apiserver) is already in use by pid {os.getpid()}" in proc.stderr
    assert "--port-base" in proc.stderr  # what to do
    time.sleep(0.2)
    assert _processes_mentioning(str(state)) == []
    assert not list((state / "run").glob("*.pid")) if (state / "run").exists() else True


def test_missing_binaries_say_to_run_setup(tmp_path: Path) -> None:
    proc = _run(
        ["-m", "e2e.cluster", "up", "--port-base", "30100"],
        {"DIALOGUE_CLUSTER_DIR": str(tmp_path / "cluster"), "DIALOGUE_CACHE": str(tmp_path / "empty-cache")},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "binaries are missing" in proc.stderr
    assert "python -m e2e.setup cluster" in proc.stderr
    assert _processes_mentioning(str(tmp_path)) == []


def test_failed_go_module_download_names_the_module_and_leaves_no_half_cache(tmp_path: Path) -> None:
    env = {"GOFLAGS": "-mod=mod", "GOPATH": str(Path.home() / "go")}
    started = time.monotonic()
    with pytest.raises(SetupError) as failed:
        build.build_go_tool("kwok", build.KWOK_PACKAGE, "v0.0.0-no-such-version", cache=tmp_path, env=env)
    message = str(failed.value)
    assert "building kwok v0.0.0-no-such-version failed" in message
    assert "sigs.k8s.io/kwok" in message and "v0.0.0-no-such-version" in message
    assert "Last lines of go's output" in message
    assert "What to do" in message
    assert time.monotonic() - started < 90
    assert list((tmp_path / "bin").iterdir()) == []  # no half-built cache directory left behind


def test_failed_kubernetes_build_of_an_unknown_release_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SetupError) as failed:
        build.build_kubernetes("v1.35.999", cache=tmp_path, env={"GOFLAGS": "-mod=mod"})
    message = str(failed.value)
    assert "building kubernetes v1.35.999" in message
    assert "k8s.io/kubernetes@v1.35.999" in message
    assert list((tmp_path / "bin").iterdir()) == []


def test_missing_go_toolchain_says_what_to_install(tmp_path: Path) -> None:
    no_go = ":".join(p for p in os.environ["PATH"].split(":") if not (Path(p) / "go").exists())
    proc = _run(["-m", "e2e.setup", "cluster"], {"PATH": no_go, "DIALOGUE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "setup: cluster FAILED" in proc.stderr
    assert "Go toolchain" in proc.stderr and "Install Go" in proc.stderr


def test_component_failing_mid_start_shows_its_log_and_everything_started_is_stopped(tmp_path: Path) -> None:
    port = free_port_block()
    fake_kwok = tmp_path / "kwok"
    fake_kwok.write_text("#!/bin/sh\necho 'kwok: cannot load config: simulated failure' >&2\nexit 3\n")
    fake_kwok.chmod(0o755)
    bins = dataclasses.replace(build.binaries(), kwok=fake_kwok)
    if bins.missing():
        pytest.fail(f"cluster binaries missing ({bins.missing()}): run `python -m e2e.setup cluster`")
    lines: list[str] = []
    state = tmp_path / "cluster"
    cluster = LocalCluster(
        state, port_base=port, kwok_nodes=3, process_nodes=False, real_node=False, out=lines.append, bins=bins
    )
    with pytest.raises(ClusterError) as failed:
        cluster.up()
    message = str(failed.value)
    assert "kwok exited during start" in message
    assert "simulated failure" in message  # the failing component's log tail
    assert any(line.startswith("kube-apiserver ready") for line in lines)  # it got that far
    time.sleep(0.2)
    assert _processes_mentioning(str(state)) == []
    assert not list((state / "run").glob("*.pid"))
    assert not cluster.layout.tmpfs_dir.exists()


def test_cluster_fixture_fails_without_skipping_when_binaries_are_missing(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_needs_cluster.py").write_text("def test_uses_cluster(cluster):\n    pass\n")
    config = ["-p", "no:cacheprovider", "--rootdir", str(REPO_ROOT), "-c", str(REPO_ROOT / "pyproject.toml")]
    proc = _run(
        ["-m", "pytest", str(tmp_path / "test_needs_cluster.py"), *config],
        {"DIALOGUE_CACHE": str(tmp_path / "empty-cache"), "DIALOGUE_CLUSTER_DIR": str(tmp_path / "cluster")},
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "1 error" in proc.stdout
    assert "skipped" not in proc.stdout
    assert "binaries are missing" in proc.stdout
    assert "run `python -m e2e.setup cluster`" in proc.stdout
    assert "Traceback" not in proc.stdout
