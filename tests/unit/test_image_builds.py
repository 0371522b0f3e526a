"""Image builds are keyed on their inputs: a changed source file rebuilds, a bytecode cache or an egg-info does
not; tags follow the chart's appVersion (the Dockerfiles' BASE argument: tests/unit/api/test_images.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from e2e import images

ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "pyproject.toml").write_text("[project]\n")


def test_key_changes_with_a_source_file_and_not_with_caches(tmp_path: Path) -> None:
    _tree(tmp_path)
    first = images.input_key(tmp_path, ["pyproject.toml", "pkg"], "base-1")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "pkg" / "x.egg-info").mkdir()
    (tmp_path / "pkg" / "x.egg-info" / "PKG-INFO").write_text("Name: x\n")
    assert images.input_key(tmp_path, ["pyproject.toml", "pkg"], "base-1") == first
    (tmp_path / "pkg" / "mod.py").write_text("x = 2\n")
    changed = images.input_key(tmp_path, ["pyproject.toml", "pkg"], "base-1")
    assert changed != first
    assert images.input_key(tmp_path, ["pyproject.toml", "pkg"], "base-2") != changed  # a new base rebuilds too


def test_a_renamed_file_changes_the_key(tmp_path: Path) -> None:
    _tree(tmp_path)
    first = images.input_key(tmp_path, ["pkg"])
    (tmp_path / "pkg" / "mod.py").rename(tmp_path / "pkg" / "other.py")
    assert images.input_key(tmp_path, ["pkg"]) != first


def test_refs_are_registry_name_and_the_charts_app_version() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "dialogue-operator" / "Chart.yaml").read_text())
    assert images.image_ref("operator") == f"ghcr.io/dialogue-operator/operator:{chart['appVersion']}"
    assert images.image_ref("gateway", "localhost:5000/team/") == f"localhost:5000/team/gateway:{chart['appVersion']}"
