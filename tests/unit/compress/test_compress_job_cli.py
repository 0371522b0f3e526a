"""The compression job's command line without llm-compressor: reuse, early refusals, termination log lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from compress_fakes import fake_model
from dialogue_runtime.compress import job, store
from dialogue_runtime.compress.calibration_set import load_calibration
from dialogue_runtime.compress.identity import model_identity
from dialogue_runtime.compress.recipe import Recipe, Scheme, recipe_id


@pytest.fixture
def term_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "termination-log"
    monkeypatch.setenv("DIALOGUE_TERMINATION_LOG", str(path))
    return path


def test_group_size_128_on_hidden_576_fails_before_loading_anything(
    tmp_path: Path, term_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = fake_model(tmp_path / "base")
    argv = ["--base", str(base), "--scheme", "W4A16", "--group-size", "128", "--output-root", str(tmp_path / "out")]
    assert job.main(argv) == 1
    line = term_log.read_text().strip()
    assert line.startswith("InvalidRecipe: group size 128 does not divide the model's hidden_size 576")
    assert "\n" not in line
    assert "dialogue_runtime.compress.oneshot" not in sys.modules, "refused before torch/llmcompressor loaded"
    assert "precheck ..." in capsys.readouterr().out
    assert not (tmp_path / "out").exists(), "a refused recipe leaves nothing on the volume"


def test_missing_calibration_set_is_a_clear_failure(tmp_path: Path, term_log: Path) -> None:
    base = fake_model(tmp_path / "base")
    missing = tmp_path / "nope.jsonl"
    argv = ["--base", str(base), "--scheme", "W8A8", "--calibration", str(missing), "--output-root", str(tmp_path)]
    assert job.main(argv) == 1
    assert term_log.read_text().strip() == f"CalibrationSetMissing: calibration set not found: {missing}"


def test_missing_base_model_is_a_clear_failure(tmp_path: Path, term_log: Path) -> None:
    argv = ["--base", str(tmp_path / "absent"), "--scheme", "FP8_DYNAMIC", "--output-root", str(tmp_path)]
    assert job.main(argv) == 1
    assert term_log.read_text().startswith("ModelNotFound: model folder not found:")


def test_a_finished_artifact_is_reused_without_compressing(
    tmp_path: Path, term_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = fake_model(tmp_path / "base")
    out = tmp_path / "out"
    recipe = Recipe(scheme=Scheme.W8A8)
    rid = recipe_id(recipe, load_calibration("default").digest)
    paths = store.artifact_paths(out, "base", model_identity(base), recipe.label(), rid)
    paths.final_dir.mkdir(parents=True)
    (paths.final_dir / "model.safetensors").write_bytes(b"x" * 100)
    (paths.final_dir / store.MARKER_NAME).write_text("{}")
    link = out / "chat-w8a8"
    argv = ["--base", str(base), "--scheme", "w8a8", "--output-root", str(out), "--link", str(link)]
    assert job.main(argv) == 0
    assert "reused" in capsys.readouterr().out
    result = json.loads(term_log.read_text())
    assert result["reused"] is True
    assert result["artifact"] == str(paths.final_dir)
    assert link.resolve() == paths.final_dir.resolve()
    assert result["link"] == str(link)


def test_an_output_root_that_is_no_folder_fails_with_the_os_error(tmp_path: Path, term_log: Path) -> None:
    base = fake_model(tmp_path / "base")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = ["--base", str(base), "--scheme", "FP8_DYNAMIC", "--output-root", str(blocker / "sub")]
    assert job.main(argv) == 1
    line = term_log.read_text().strip()
    assert line.startswith("CompressionFailed: NotADirectoryError:")
    assert str(blocker) in line
