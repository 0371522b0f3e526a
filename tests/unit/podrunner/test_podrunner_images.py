"""The image -> local environment table: repository parsing, lookups, and the messages for what is missing."""

from pathlib import Path

import pytest

from e2e.cluster import images


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("python:3.11-slim", "python"),
        ("docker.io/library/python:3.11", "python"),
        ("library/busybox", "busybox"),
        ("ghcr.io/dialogue-operator/runtime:0.1.0", "ghcr.io/dialogue-operator/runtime"),
        ("ghcr.io/dialogue-operator/runtime@sha256:abcd", "ghcr.io/dialogue-operator/runtime"),
        ("localhost:5000/team/app:1", "localhost:5000/team/app"),
        ("localhost:5000/team/app", "localhost:5000/team/app"),
    ],
)
def test_repository_of(image: str, repository: str) -> None:
    assert images.repository_of(image) == repository


def test_every_documented_repository_is_in_the_table() -> None:
    for repository in (
        "ghcr.io/dialogue-operator/runtime",
        "ghcr.io/dialogue-operator/gateway",
        "ghcr.io/dialogue-operator/operator",
        "ghcr.io/dialogue-operator/compress",
        "python",
        "busybox",
    ):
        assert images.lookup(f"{repository}:tag") is not None
        assert f"`{repository}`" in (images.__doc__ or "")


def test_unknown_image_names_the_table() -> None:
    assert images.lookup("nginx:1.27") is None
    with pytest.raises(images.ImageNotAvailable, match=r"e2e/cluster/images.py.*known repositories: busybox"):
        images.resolve("nginx:1.27")


def test_runtime_image_uses_engine_venv_and_runtime_source(tmp_path: Path) -> None:
    venv = tmp_path / "venvs" / images.ENGINE_VENV
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").touch()
    local = images.resolve("ghcr.io/dialogue-operator/runtime:0.1.0", repo_root=Path("/src/repo"), cache=tmp_path)
    assert local.path.split(":")[0] == str(venv / "bin")
    assert local.env["PYTHONPATH"] == "/src/repo/runtime"
    assert "LD_PRELOAD" not in local.env  # dropped: the library does not exist in this fake venv
    assert local.entrypoint == ("python3", "-m", "dialogue_runtime.engine")


def test_missing_venv_says_which_setup_step_creates_it(tmp_path: Path) -> None:
    with pytest.raises(images.ImageNotAvailable, match=r"does not exist; create it with `python -m e2e.setup engine`"):
        images.resolve("ghcr.io/dialogue-operator/runtime:0.1.0", cache=tmp_path)


def test_gateway_and_operator_use_the_project_venv(tmp_path: Path) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python3").touch()
    gateway = images.resolve("ghcr.io/dialogue-operator/gateway:1", repo_root=tmp_path)
    operator_image = images.resolve("ghcr.io/dialogue-operator/operator:1", repo_root=tmp_path)
    assert gateway.path.startswith(f"{tmp_path}/.venv/bin:")
    assert operator_image.env["PYTHONPATH"] == f"{tmp_path}/operator:{tmp_path}/runtime"


def test_python_image_is_the_system_python() -> None:
    local = images.resolve("python:3.11-slim")
    assert local.path == images.SYSTEM_PATH
    assert local.cmd == ("python3",)


def test_venvs_are_where_the_setup_steps_build_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from e2e import compress_env, engine_env

    monkeypatch.setenv("DIALOGUE_CACHE", str(tmp_path))
    for image, venv in (
        ("ghcr.io/dialogue-operator/runtime:1", engine_env.engine_venv()),
        ("ghcr.io/dialogue-operator/compress:1", compress_env.venv_dir()),
    ):
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python3").touch()
        assert images.resolve(image).path.startswith(f"{venv}/bin:")
