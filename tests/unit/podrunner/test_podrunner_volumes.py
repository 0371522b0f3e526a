"""Volume contents: configMap/secret items and modes, downwardAPI files, hostPath types (no API server needed)."""

from pathlib import Path

import pytest

from e2e.cluster.podrunner.volumes import VolumeError, downward_files, host_path_volume, key_files

DATA = {"engine.json": b"{}", "extra": b"x"}


def test_all_keys_with_default_mode() -> None:
    assert key_files(DATA, {"name": "cfg"}, 'configmap "cfg"', "v") == {
        "engine.json": (b"{}", 0o644),
        "extra": (b"x", 0o644),
    }


def test_items_pick_keys_paths_and_modes() -> None:
    ref = {
        "defaultMode": 0o400,
        "items": [{"key": "engine.json", "path": "conf/e.json"}, {"key": "extra", "mode": 0o755}],
    }
    assert key_files(DATA, ref, 'secret "s"', "v") == {"conf/e.json": (b"{}", 0o400), "extra": (b"x", 0o755)}


def test_missing_object_or_key_fails_the_mount_unless_optional() -> None:
    with pytest.raises(VolumeError, match='configmap "cfg" not found'):
        key_files(None, {"name": "cfg"}, 'configmap "cfg"', "v")
    assert key_files(None, {"optional": True}, 'configmap "cfg"', "v") == {}
    with pytest.raises(VolumeError, match="has no key 'nope'"):
        key_files(DATA, {"items": [{"key": "nope", "path": "n"}]}, 'configmap "cfg"', "v")


def test_downward_api_files() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "chat", "uid": "u", "labels": {"b": "2", "a": "1"}},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "2Gi"}}}]},
    }
    spec = {
        "items": [
            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
        ]
    }
    assert downward_files(pod, spec, 0o644) == {
        "namespace": (b"chat", 0o644),
        "labels": (b'a="1"\nb="2"', 0o644),
        "mem": (b"2048", 0o644),
    }


def test_host_path_types(tmp_path: Path) -> None:
    created = host_path_volume({"path": str(tmp_path / "new" / "dir"), "type": "DirectoryOrCreate"}, "v")
    assert created.is_dir()
    file_path = host_path_volume({"path": str(tmp_path / "f" / "file"), "type": "FileOrCreate"}, "v")
    assert file_path.is_file()
    with pytest.raises(VolumeError, match="is not a directory"):
        host_path_volume({"path": str(file_path), "type": "Directory"}, "v")
    with pytest.raises(VolumeError, match="is not a file"):
        host_path_volume({"path": str(tmp_path / "absent"), "type": "File"}, "v")
