"""Launch plans: image environment under the pod's env, the kubelet's waiting reasons, StartError."""

from pathlib import Path

import pytest

from e2e.cluster.podrunner.envvars import ObjectSource
from e2e.cluster.podrunner.launch import LaunchError, PodContext, plan

POD = {
    "metadata": {"name": "web-0", "namespace": "chat", "uid": "u"},
    "spec": {"volumes": []},
    "status": {"podIP": "127.32.1.9"},
}


def context(tmp_path: Path) -> PodContext:
    return PodContext(
        pod=POD,
        repo_root=tmp_path,
        pod_dir=tmp_path / "pod",
        source=ObjectSource(secret=lambda ns, n: None, configmap=lambda ns, n: None),
        service_env={"KUBERNETES_SERVICE_HOST": "127.0.0.1"},
        allocatable={},
        host_env={"HOME": "/root", "PATH": "/host/only"},
        volume_paths={},
    )


def test_plan_layers_host_image_and_pod_env(tmp_path: Path) -> None:
    container = {
        "name": "web",
        "image": "python:3.11-slim",
        "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    }
    result = plan(context(tmp_path), container)
    assert result.argv == ["python3", "-m", "http.server", "--bind", "127.32.1.9"]
    assert result.env["PATH"].startswith("/usr/local/sbin")  # the image's PATH, not the runner's
    assert result.env["HOSTNAME"] == "web-0" and result.env["HOME"] == "/root"
    assert result.env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert result.workdir_on_host and Path(result.workdir).is_dir()
    assert result.start_error == ""


def test_waiting_reasons(tmp_path: Path) -> None:
    with pytest.raises(LaunchError) as pull:
        plan(context(tmp_path), {"name": "c", "image": "nginx"})
    assert pull.value.reason == "ErrImagePull"
    missing = {
        "name": "c",
        "image": "busybox",
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    with pytest.raises(LaunchError) as config:
        plan(context(tmp_path), missing)
    assert config.value.reason == "CreateContainerConfigError" and 'secret "s" not found' in str(config.value)


def test_unknown_command_is_a_start_error(tmp_path: Path) -> None:
    result = plan(context(tmp_path), {"name": "c", "image": "busybox", "command": ["no-such-tool-here"]})
    assert result.start_error == 'exec: "no-such-tool-here": executable file not found in $PATH'
    assert plan(context(tmp_path), {"name": "c", "image": "busybox", "command": ["/opt/x"]}).start_error == ""
