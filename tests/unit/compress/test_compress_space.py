"""The compression job's free-space precheck: the size estimate, the refusal's numbers, a real full tmpfs."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from compress_fakes import fake_model
from dialogue_runtime.compress import job, space
from dialogue_runtime.compress.errors import StorageError
from dialogue_runtime.compress.recipe import Scheme

MIB = 2**20


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_the_estimate_is_the_16bit_weights_times_the_schemes_ratio_plus_margin_and_other_files(
    tmp_path: Path,
) -> None:
    base = fake_model(tmp_path / "bf16", weights=b"\x01" * MIB)
    others = sum(p.stat().st_size for p in base.iterdir() if p.suffix != ".safetensors")
    fp8 = space.estimate(base, Scheme.FP8_DYNAMIC)
    assert (fp8.weights_16bit_bytes, fp8.other_bytes) == (MIB, others)
    assert fp8.need_bytes == math.ceil(MIB * 0.62 * 1.1) + others
    w4 = space.estimate(base, Scheme.W4A16_ASYM)
    assert w4.need_bytes < fp8.need_bytes
    assert "1.0 MiB of base weights x 0.43 for W4A16_ASYM + 10% margin" in w4.explain()
    # An fp32 checkpoint of the same model holds twice the bytes; the artifact is the same size.
    fp32 = fake_model(tmp_path / "fp32", weights=b"\x01" * 2 * MIB, dtype="F32")
    assert space.estimate(fp32, Scheme.FP8_DYNAMIC).weights_16bit_bytes == MIB


def test_the_refusal_says_how_much_is_needed_and_free_and_where(tmp_path: Path) -> None:
    need = space.estimate(fake_model(tmp_path / "base", weights=b"\x01" * 8 * MIB), Scheme.W8A8)
    where = tmp_path / "store"
    assert space.check_free_space(where, need, "w8a8", lambda _: Usage(0, 0, need.need_bytes)) == need.need_bytes
    with pytest.raises(StorageError) as refused:
        space.check_free_space(where, need, "w8a8", lambda _: Usage(0, 0, need.need_bytes - 1))
    assert refused.value.reason == "StorageFull"
    message = str(refused.value)
    assert message.startswith(
        f"no space left on the output volume for the w8a8 artifact: need ~{need.need_bytes / MIB:.1f} MiB, "
        f"{(need.need_bytes - 1) / MIB:.1f} MiB free at {where}"
    )
    assert "8.0 MiB of base weights x 0.62 for W8A8" in message


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (the test runs as root, like CI); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "volume"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True, timeout=30)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, timeout=30)


def test_a_full_volume_fails_storage_full_before_the_model_is_loaded(
    tmp_path: Path, small_volume: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    term_log = tmp_path / "termination-log"
    monkeypatch.setenv("DIALOGUE_TERMINATION_LOG", str(term_log))
    base = fake_model(tmp_path / "base", weights=b"\x01" * 2 * MIB)  # ~1.4 MiB of FP8 artifact: cannot fit
    argv = ["--base", str(base), "--scheme", "FP8_DYNAMIC", "--output-root", str(small_volume)]
    assert job.main(argv) == 1
    line = term_log.read_text().strip()
    free_mib = shutil.disk_usage(small_volume).free / MIB
    assert line.startswith(
        "StorageFull: no space left on the output volume for the fp8-dynamic artifact: need ~1.4 MiB, "
        f"{free_mib:.1f} MiB free at {small_volume} (estimate: 2.0 MiB of base weights x 0.62 for FP8_DYNAMIC"
    ), line
    assert "\n" not in line
    assert "space-check ..." in capsys.readouterr().out
    assert "dialogue_runtime.compress.oneshot" not in sys.modules, "refused before torch/llmcompressor loaded"
    left = sorted(p.name for p in small_volume.rglob("*"))
    assert len(left) == 2 and left[0].startswith(".lock-fp8-dynamic--"), f"only the model folder and lock: {left}"
    # What fits passes, measured on the same real volume.
    fits = space.estimate(fake_model(tmp_path / "small", weights=b"\x01" * 64 * 1024), Scheme.FP8_DYNAMIC)
    assert space.check_free_space(small_volume, fits, "fp8-dynamic") == shutil.disk_usage(small_volume).free
