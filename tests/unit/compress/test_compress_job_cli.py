"""The compression job's command line without llm-compressor: reuse, early refusals, termination log lines."""

from __future__ import annotations

import fcntl
import json
import shutil
import sys
import threading
from pathlib import Path

import pytest
from compress_fakes import fake_model
from dialogue_runtime.compress import job, store
from dialogue_runtime.compress.calibration_set import load_calibration
from dialogue_runtime.compress.identity import model_identity
from dialogue_runtime.compress.recipe import Recipe, Scheme, recipe_id
from dialogue_runtime.compress.termination import Progress


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


class FakeCompressor:
    """Stands in for llm-compressor (not in this venv; the real one runs in tests/integration/compress): writes a
    weight file into the partial folder and counts its runs. `hold` keeps the first run inside the lock."""

    def __init__(self) -> None:
        self.runs = 0
        self.inside = threading.Event()
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, base: Path, recipe: Recipe, calibration: object, partial: Path, progress: object) -> None:
        self.runs += 1
        self.inside.set()
        assert self.hold.wait(timeout=60), "the test never released the first compression"
        partial.mkdir(parents=True)
        (partial / "model.safetensors").write_bytes(b"q" * 64)


@pytest.fixture
def compressor(monkeypatch: pytest.MonkeyPatch) -> FakeCompressor:
    fake = FakeCompressor()
    monkeypatch.setattr(job, "_compress_into", fake)
    return fake


def run_for(base: Path, out: Path, link_name: str, term_log: Path) -> dict[str, object]:
    """What one DialogueModel's Job does: the same base and recipe, its own serving link."""
    argv = ["--base", str(base), "--scheme", "FP8_DYNAMIC", "--output-root", str(out / ".artifacts")]
    assert job.main([*argv, "--link", str(out / link_name)]) == 0
    result: dict[str, object] = json.loads(term_log.read_text())
    return result


def test_two_models_on_the_same_base_and_recipe_compress_once(
    tmp_path: Path, term_log: Path, compressor: FakeCompressor
) -> None:
    base = fake_model(tmp_path / "SmolLM2")
    out = tmp_path / "compressed"
    first = run_for(base, out, "chat-fp8", term_log)
    second = run_for(base, out, "chat2-fp8", term_log)
    assert (first["reused"], second["reused"], compressor.runs) == (False, True, 1)
    artifact = Path(str(first["artifact"]))
    rid = recipe_id(Recipe(scheme=Scheme.FP8_DYNAMIC), None)
    assert artifact == out / ".artifacts" / f"smollm2--{model_identity(base)[:16]}" / f"fp8-dynamic--{rid[:16]}"
    assert second["artifact"] == str(artifact)
    assert (out / "chat-fp8").resolve() == (out / "chat2-fp8").resolve() == artifact.resolve()
    # A copy of the base under another folder name has the same content: still no second compression.
    copy = tmp_path / "smollm2-copy"
    shutil.copytree(base, copy)
    third = run_for(copy, out, "chat3-fp8", term_log)
    assert (third["reused"], third["artifact"], compressor.runs) == (True, str(artifact), 1)


class Steps(Progress):
    """Progress that also tells the test which step a job is in (quietly: no Job log here)."""

    def __init__(self) -> None:
        super().__init__("compress")
        self.reached: dict[str, threading.Event] = {}

    def step(self, name: str, detail: str = "") -> None:
        super().step(name, detail)
        self.reached.setdefault(name, threading.Event()).set()

    def wait_for(self, name: str) -> bool:
        return self.reached.setdefault(name, threading.Event()).wait(timeout=30)


def test_a_second_job_for_the_same_artifact_waits_for_the_first_and_reuses_it(
    tmp_path: Path, compressor: FakeCompressor
) -> None:
    base = fake_model(tmp_path / "smollm2")
    out = tmp_path / "compressed"
    recipe = Recipe(scheme=Scheme.FP8_DYNAMIC)
    results: dict[str, job.JobResult] = {}
    steps = {"chat": Steps(), "chat2": Steps()}

    def run(name: str) -> None:
        results[name] = job.run(base, recipe, out / ".artifacts", link=out / f"{name}-fp8", progress=steps[name])

    compressor.hold.clear()
    first = threading.Thread(target=run, args=("chat",))
    first.start()
    assert compressor.inside.wait(timeout=30), "the first job never started compressing"
    paths = store.artifact_paths(
        out / ".artifacts", "smollm2", model_identity(base), recipe.label(), recipe_id(recipe, None)
    )
    with paths.lock_file.open("a") as fh:  # the first job holds the artifact's lock while it compresses
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
            held_by_first = False
        except BlockingIOError:
            held_by_first = True
    second = threading.Thread(target=run, args=("chat2",))
    second.start()
    assert steps["chat2"].wait_for("wait"), "the second job never waited for the first one's lock"
    compressor.hold.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert not first.is_alive() and not second.is_alive()
    assert (results["chat"].reused, results["chat2"].reused, compressor.runs) == (False, True, 1)
    assert results["chat"].artifact == results["chat2"].artifact == paths.final_dir
    assert held_by_first, f"nothing held {paths.lock_file} while the first job compressed"
