"""A failed test that used the cluster gets a diagnostics dump in its report: objects, events, component logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.cluster.harness import LocalCluster
from e2e.cluster.layout import REPO_ROOT

pytestmark = pytest.mark.cluster

INNER_TEST = """
import pytest

@pytest.mark.cluster
def test_fails_on_purpose(cluster, namespace):
    cluster.kubectl("create", "configmap", "evidence-left-behind", "-n", namespace)
    assert False, "deliberate failure"
"""


def test_failed_cluster_test_reports_objects_events_and_component_logs(cluster: LocalCluster, tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_inner_failure.py").write_text(INNER_TEST)
    env = {
        **os.environ,
        "DIALOGUE_CLUSTER_DIR": str(cluster.state_dir),
        "DIALOGUE_CLUSTER_PORT_BASE": str(cluster.ports.apiserver),
    }
    inner = [str(tmp_path / "test_inner_failure.py"), "-p", "no:cacheprovider", "--rootdir", str(REPO_ROOT)]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *inner, "-c", str(REPO_ROOT / "pyproject.toml")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    assert "deliberate failure" in out
    assert "cluster diagnostics" in out
    assert "kubectl get all -A -o wide" in out
    assert "kube-apiserver log (last 20 lines)" in out
    assert "kube-scheduler log (last 20 lines)" in out
    assert "events in t-test-fails-on-purpose-" in out
    assert cluster.is_up()  # the inner session shared the cluster and left it running for this one
    dumps = list((cluster.state_dir / "diagnostics").glob("*test_fails_on_purpose*.txt"))
    assert dumps and "kubectl get all" in dumps[0].read_text()
