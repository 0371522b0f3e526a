"""Bind mounts of a container: the launch script (run for real in a private mount namespace when root) and the
mount-point paths the runner creates on the host and removes afterwards."""

import os
import subprocess
from pathlib import Path

import pytest

from e2e.cluster.podrunner.mounts import Mount, MountPoints, launch_argv


def test_launch_argv_execs_the_command_after_mounts() -> None:
    argv = launch_argv([Mount(Path("/src/a b"), Path("/etc/x"), read_only=True)], "/work dir", ["echo", "$(X)"])
    assert argv[:5] == ["unshare", "-m", "--propagation", "private", "--"]
    assert argv[-3:] == ["podrunner", "echo", "$(X)"]
    script = argv[7]
    assert "mount -n -c --bind '/src/a b' /etc/x" in script  # a source that does not exist is not pinned
    assert "remount,bind,ro /etc/x" in script
    assert "cd '/work dir'" in script
    assert script.endswith('exec "$@"')


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts in a private mount namespace need root")
def test_a_mount_over_an_ancestor_cannot_hide_another_source(tmp_path: Path) -> None:
    state = tmp_path / "state"  # like a state dir under /tmp while the pod mounts an emptyDir at /tmp
    (state / "config").mkdir(parents=True)
    (state / "config" / "engine.json").write_text("{}")
    (state / "work").mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    target = tmp_path / "etc-dialogue"
    target.mkdir()
    mounts = [Mount(empty, tmp_path), Mount(state / "config", target)]
    argv = launch_argv(mounts, str(state / "work"), ["sh", "-c", f"cat {target}/engine.json; ls {tmp_path}"],
                       workdir_on_host=True)  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{}")


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts in a private mount namespace need root")
def test_a_checkout_under_a_volume_stays_visible_to_the_container(tmp_path: Path) -> None:
    """A repository cloned under /tmp, and a pod that mounts an emptyDir at /tmp: the container still imports
    its code from the checkout (the image table's PYTHONPATH points there)."""
    repo = tmp_path / "clone" / "runtime"
    repo.mkdir(parents=True)
    (repo / "marker.py").write_text("VALUE = 42\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    mounts = [Mount(empty, tmp_path)]
    script = f"cat {repo}/marker.py && ls {tmp_path}"
    hidden = subprocess.run(launch_argv(mounts, "/", ["sh", "-c", script]), capture_output=True, text=True)
    assert hidden.returncode != 0  # without keep_visible the volume hides the checkout
    argv = launch_argv(mounts, "/", ["sh", "-c", script], keep_visible=[tmp_path / "clone", tmp_path / "gone"])
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("VALUE = 42")
    assert "empty" not in result.stdout  # /tmp is still the volume, holding only the re-bound checkout


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts in a private mount namespace need root")
def test_mounts_are_visible_to_the_process_only(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "greeting").write_text("hello")
    target = tmp_path / "mnt" / "cfg"
    points = MountPoints(tmp_path / "registry.json")
    mounts = [Mount(volume, target, read_only=True)]
    points.acquire("pod-a", mounts)
    argv = launch_argv(mounts, str(tmp_path), ["sh", "-c", f"cat {target}/greeting; touch {target}/new"])
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.stdout == "hello"
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    assert not (target / "greeting").exists()  # the host never sees the mount
    points.release("pod-a")
    assert not (tmp_path / "mnt").exists()


def test_mount_points_are_shared_and_removed_by_the_last_user(tmp_path: Path) -> None:
    points = MountPoints(tmp_path / "registry.json")
    target = tmp_path / "etc" / "dialogue"
    file_target = tmp_path / "dev" / "termination-log"
    nested = target / "sub"
    points.acquire("a", [Mount(tmp_path, target), Mount(tmp_path, nested)])
    points.acquire("b", [Mount(tmp_path, target)])
    assert target.is_dir() and not nested.exists()  # nested targets are made inside the volume at launch
    points.release("a")
    assert target.is_dir()
    points.release("b")
    assert not (tmp_path / "etc").exists()
    (tmp_path / "dev").mkdir()
    file_source = tmp_path / "msg"
    file_source.write_text("x")
    points.acquire("c", [Mount(file_source, file_target)])
    assert file_target.is_file()
    points.release("c")
    assert not file_target.exists() and (tmp_path / "dev").is_dir()  # only what it created goes


def test_existing_paths_are_never_removed(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    points = MountPoints(tmp_path / "registry.json")
    points.acquire("a", [Mount(tmp_path, tmp_path / "data")])
    points.release("a")
    assert (tmp_path / "data").is_dir()


def test_two_runners_share_a_mount_point(tmp_path: Path) -> None:
    registry = tmp_path / "registry.json"
    runner_a, runner_b = MountPoints(registry, owner=os.getpid()), MountPoints(registry, owner=os.getppid())
    target = tmp_path / "var" / "run" / "secrets" / "serviceaccount"
    runner_a.acquire("pod-1/c", [Mount(tmp_path, target)])
    runner_b.acquire("pod-2/c", [Mount(tmp_path, target)])
    runner_a.release("pod-1/c")
    assert target.is_dir(), "removed while the other runner's container still has it mounted"
    runner_b.release("pod-2/c")
    assert not (tmp_path / "var").exists()


def test_leftovers_of_a_dead_runner_are_swept(tmp_path: Path) -> None:
    runner = subprocess.Popen(["sleep", "60"])  # stands in for a runner that will be killed
    registry = tmp_path / "registry.json"
    MountPoints(registry, owner=runner.pid).acquire("pod/c", [Mount(tmp_path, tmp_path / "etc" / "dialogue")])
    assert (tmp_path / "etc" / "dialogue").is_dir()
    MountPoints(registry).sweep()
    assert (tmp_path / "etc" / "dialogue").is_dir()  # its runner is alive: kept
    runner.kill()
    runner.wait()
    MountPoints(registry).sweep()
    assert not (tmp_path / "etc").exists()


def test_container_mounts_resolve_sub_paths_and_read_only_kinds(tmp_path: Path) -> None:
    from e2e.cluster.podrunner.mounts import container_mounts
    from e2e.cluster.podrunner.volumes import VolumeError

    pod = {
        "spec": {
            "volumes": [
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "data", "emptyDir": {}},
                {"name": "models", "persistentVolumeClaim": {"claimName": "m", "readOnly": True}},
            ]
        }
    }
    paths = {"cfg": tmp_path / "cfg", "data": tmp_path / "data", "models": tmp_path / "models"}
    container = {
        "name": "c",
        "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/dialogue"},
            {"name": "data", "mountPath": "/data", "subPathExpr": "$(POD_NAME)"},
            {"name": "models", "mountPath": "/models"},
        ],
    }
    mounts = container_mounts(pod, container, paths, {"POD_NAME": "web-0"})
    assert [(m.source, str(m.target), m.read_only) for m in mounts] == [
        (tmp_path / "cfg", "/etc/dialogue", True),
        (tmp_path / "data" / "web-0", "/data", False),
        (tmp_path / "models", "/models", True),
    ]
    assert (tmp_path / "data" / "web-0").is_dir()
    with pytest.raises(VolumeError, match="must be relative"):
        container_mounts(pod, {"volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "../x"}]}, paths, {})
    with pytest.raises(VolumeError, match="names no volume"):
        container_mounts(pod, {"volumeMounts": [{"name": "nope", "mountPath": "/d"}]}, paths, {})
