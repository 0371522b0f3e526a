"""Real llm-compressor and transformers on SmolLM2: artifacts, reuse, refused recipes, a full volume, the gate.

One W8A8 compression per session (module fixture) feeds the reuse and evaluation tests; each job runs as the
Job's container would (`python -m dialogue_runtime.compress|evaluate` in the compress venv, a termination log).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from compress_support import JobRun, RunningJob, make_broken_variant, require_compress_env, run_job, start_job

pytestmark = pytest.mark.compress

# Few dialogues and tokens keep the gate fast on CPU; the thresholds below hold with a wide margin (measured:
# W8A8 recovery 0.996, agreement 0.94). Fewer calibration samples than the default keep GPTQ short.
EVAL_ARGS = ["--limit", "12", "--max-new-tokens", "8", "--threshold", "0.9"]
CALIBRATION_ARGS = ["--num-calibration-samples", "16"]


def cache_args(workdir: Path) -> list[str]:
    return ["--cache-dir", str(workdir / "eval-cache")]


@pytest.fixture(scope="module")
def base_model() -> Path:
    return require_compress_env()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("compress")
    yield path
    shutil.rmtree(path, ignore_errors=True)  # artifacts are hundreds of MB


@pytest.fixture(scope="module")
def w4a16_g64(base_model: Path, workdir: Path) -> Iterator[RunningJob]:
    """Started before the W8A8 job and left to run beside it: both are single-threaded, the machine has 2 cores."""
    args = ["--base", str(base_model), "--scheme", "W4A16", "--group-size", "64", *CALIBRATION_ARGS]
    job = start_job("compress", [*args, "--output-root", str(workdir / "store-g64")], workdir)
    yield job
    if job.proc.poll() is None:
        job.proc.kill()
        job.proc.communicate()


@pytest.fixture(scope="module")
def w8a8(base_model: Path, workdir: Path, w4a16_g64: RunningJob) -> JobRun:
    store = workdir / "store"
    args = ["--base", str(base_model), "--scheme", "W8A8", "--output-root", str(store / ".artifacts")]
    args += ["--link", str(store / "chat-w8a8")]
    return run_job("compress", [*args, *CALIBRATION_ARGS], workdir)


def test_w8a8_writes_a_compressed_tensors_checkpoint_with_visible_progress(
    w8a8: JobRun, base_model: Path, workdir: Path
) -> None:
    result = w8a8.result()
    artifact = Path(result["artifact"])
    assert result["reused"] is False
    config = json.loads((artifact / "config.json").read_text())
    quant = config["quantization_config"]
    assert quant["quant_method"] == "compressed-tensors"
    weights = quant["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["type"]) == (8, "int")
    assert (artifact / ".dialogue-artifact.json").is_file()
    assert (artifact / "tokenizer.json").is_file()
    base_bytes = (base_model / "model.safetensors").stat().st_size
    assert result["sizeBytes"] < 0.75 * base_bytes, "INT8 weights must shrink the checkpoint"
    for step in ("identify", "precheck", "load", "quantize", "save", "commit"):
        assert f"compress: {step} done in" in w8a8.stdout
    assert (workdir / "store" / "chat-w8a8").resolve() == artifact.resolve()


def test_the_same_input_is_reused_not_compressed_again(w8a8: JobRun, base_model: Path, workdir: Path) -> None:
    artifact = Path(w8a8.result()["artifact"])
    weights = artifact / "model.safetensors"
    before = (weights.stat().st_mtime_ns, (artifact / ".dialogue-artifact.json").stat().st_mtime_ns)
    args = ["--base", str(base_model), "--scheme", "w8a8", "--output-root", str(workdir / "store" / ".artifacts")]
    again = run_job("compress", [*args, *CALIBRATION_ARGS], workdir)
    result = again.result()
    assert result["reused"] is True
    assert result["artifact"] == str(artifact)
    assert "reused" in again.stdout
    assert "quantize ..." not in again.stdout
    assert (weights.stat().st_mtime_ns, (artifact / ".dialogue-artifact.json").stat().st_mtime_ns) == before
    assert sorted(p.name for p in artifact.parent.iterdir() if not p.name.startswith(".lock")) == [artifact.name]


def test_w4a16_group_128_is_refused_with_the_reason(base_model: Path, workdir: Path) -> None:
    store = workdir / "store-g128"
    run = run_job(
        "compress",
        ["--base", str(base_model), "--scheme", "W4A16", "--group-size", "128", "--output-root", str(store)],
        workdir,
    )
    assert run.returncode == 1
    assert run.termination.startswith("InvalidRecipe: group size 128 does not divide the model's hidden_size 576")
    assert "\n" not in run.termination
    assert not store.exists(), "a refused recipe leaves nothing on the volume"


def test_w4a16_group_64_works(w4a16_g64: RunningJob, base_model: Path, workdir: Path) -> None:
    result = w4a16_g64.wait().result()
    config = json.loads((Path(result["artifact"]) / "config.json").read_text())
    weights = config["quantization_config"]["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["strategy"]) == (4, 64, "group")
    assert result["sizeBytes"] < 0.5 * (base_model / "model.safetensors").stat().st_size
    shutil.rmtree(workdir / "store-g64", ignore_errors=True)


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, check=False
    )
    return probe.returncode == 0


def test_a_full_volume_ends_with_storage_full_and_leaves_nothing_behind(base_model: Path, workdir: Path) -> None:
    if not _can_mount_tmpfs():
        pytest.skip("needs `unshare -m` and tmpfs mounts (root) to make a small full volume")
    volume = workdir / "small-volume"
    volume.mkdir()
    # A 40 MiB tmpfs in a private mount namespace: the FP8 checkpoint (~160 MB) cannot fit, and the job's free-space
    # check says so before it loads the model. After the job, the shell inside the namespace counts the files left
    # on the volume. (ENOSPC during the save, the safety net, is shown on the cluster by test_rollout_refused_cluster:
    # there another writer fills the volume while the job runs.)
    script = (
        f'mount -t tmpfs -o size=40m tmpfs "{volume}" || exit 99; "$@"; rc=$?; '
        f'echo "left-on-volume: $(find "{volume}" -type f | wc -l)"; exit $rc'
    )
    prefix = ["unshare", "-m", "sh", "-c", script, "sh"]
    args = ["--base", str(base_model), "--scheme", "FP8_DYNAMIC", "--output-root", str(volume)]
    run = run_job("compress", args, workdir, prefix=prefix)
    assert run.returncode == 1, run.stdout[-2000:]
    assert run.termination.startswith("StorageFull: "), run.termination
    assert "need ~" in run.termination and "MiB free" in run.termination, run.termination
    assert "the base model was not loaded" in run.termination, run.termination
    assert "left-on-volume: 1" in run.stdout, "only the lock file may remain: the partial output is removed"


def test_w8a8_passes_the_quality_gate(w8a8: JobRun, base_model: Path, workdir: Path) -> None:
    artifact = w8a8.result()["artifact"]
    out = workdir / "eval-w8a8.json"
    run = run_job(
        "evaluate",
        ["--base", str(base_model), "--variant", artifact, *EVAL_ARGS, "--output", str(out), *cache_args(workdir)],
        workdir,
    )
    verdict = run.result()
    assert verdict["eligible"] is True, verdict
    assert verdict["recovery"] >= 0.9
    assert verdict["agreement"] >= 0.5
    written = json.loads(out.read_text())
    assert written["eligible"] is True and len(written["perDialogue"]) == 12
    for step in ("golden", "load", "base", "variant", "score"):
        assert f"evaluate: {step} done in" in run.stdout


def test_a_collapsed_variant_fails_the_quality_gate(base_model: Path, workdir: Path) -> None:
    broken = make_broken_variant(base_model, workdir / "broken", workdir)
    args = ["--base", str(base_model), "--variant", str(broken), *EVAL_ARGS, *cache_args(workdir)]
    run = run_job("evaluate", args, workdir)
    verdict = run.result()
    assert verdict["eligible"] is False
    assert verdict["recovery"] < 0.5
    assert verdict["reasons"] and "< threshold 0.9" in verdict["reasons"][0]
