"""preStop hooks: parsed like probes, bounded by the grace period; an exec check runs inside the container's
mount namespace (real processes, root only)."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from e2e.cluster.podrunner.hooks import pre_stop_spec, run_pre_stop_hooks
from e2e.cluster.podrunner.mounts import Mount, launch_argv
from e2e.cluster.podrunner.probes import CheckTarget, ProbeSpec, run_check


def test_pre_stop_kinds() -> None:
    assert pre_stop_spec({"name": "c"}, 30) is None
    assert pre_stop_spec({"lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}, 30) == 5.0
    spec = pre_stop_spec({"lifecycle": {"preStop": {"httpGet": {"path": "/drain", "port": "http"}}},
                          "ports": [{"name": "http", "containerPort": 8000}]}, 12)  # fmt: skip
    assert isinstance(spec, ProbeSpec) and spec.port == 8000 and spec.path == "/drain" and spec.timeout_s == 12


def test_hooks_never_outlast_the_grace_period() -> None:
    started = time.monotonic()
    took = run_pre_stop_hooks([(60.0, CheckTarget(pod_ip="127.0.0.1"))], grace_s=0.3)
    assert took < 2 and time.monotonic() - started < 2


@pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")
def test_exec_check_sees_the_container_mounts(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "ready").touch()
    target = tmp_path / "mnt"
    target.mkdir()
    argv = launch_argv([Mount(volume, target)], str(tmp_path), ["sleep", "30"])
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        check = ProbeSpec(kind="exec", command=("test", "-f", f"{target}/ready"), timeout_s=5)
        target_ns = CheckTarget(pod_ip="127.0.0.1", pid=proc.pid, env={"PATH": "/usr/bin:/bin"}, cwd=str(tmp_path))
        deadline = time.monotonic() + 10
        while not run_check(check, target_ns)[0]:  # the mount appears once the launch script ran
            assert time.monotonic() < deadline, "exec check never saw the mounted file"
            time.sleep(0.05)
        assert not (target / "ready").exists()  # only inside the container's namespace
        failing = ProbeSpec(kind="exec", command=("sh", "-c", "echo nope; exit 4"), timeout_s=5)
        ok, message = run_check(failing, target_ns)
        assert not ok and "exited with 4: nope" in message
    finally:
        proc.kill()
        proc.wait()
