"""Helpers for the tests that run the real compression and evaluation jobs (llm-compressor venv, SmolLM2)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e import compress_env, engine_env

REPO_ROOT = Path(__file__).resolve().parents[3]
JOB_TIMEOUT_S = 900  # GPTQ on 2 busy cores can take minutes; a hang still ends


def require_compress_env() -> Path:
    """The SmolLM2 folder; fails with what to run when the compress venv or the model is missing."""
    if not compress_env.is_ready() or not engine_env.model_ready():
        pytest.fail(
            f"the llm-compressor environment ({compress_env.venv_dir()}) or SmolLM2 ({engine_env.smollm2_dir()}) "
            "is missing: run `python -m e2e.setup engine compress`"
        )
    return engine_env.smollm2_dir()


@dataclass(frozen=True)
class JobRun:
    returncode: int
    stdout: str
    stderr: str
    termination: str
    elapsed_s: float

    def result(self) -> dict[str, Any]:
        assert self.returncode == 0, f"job failed ({self.returncode}): {self.termination}\n{self.stderr[-3000:]}"
        data: dict[str, Any] = json.loads(self.termination)
        return data


@dataclass
class RunningJob:
    proc: subprocess.Popen[str]
    termination_path: Path
    started: float

    def wait(self) -> JobRun:
        try:
            stdout, stderr = self.proc.communicate(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate()
        elapsed = time.monotonic() - self.started
        path = self.termination_path
        termination = path.read_text().strip() if path.exists() else ""
        return JobRun(self.proc.returncode, stdout, stderr, termination, elapsed)


def start_job(module: str, args: list[str], workdir: Path, prefix: list[str] | None = None) -> RunningJob:
    """Starts `python -m dialogue_runtime.<module>` in the compress venv, like the Job's container would."""
    workdir.mkdir(parents=True, exist_ok=True)
    term = workdir / f"termination-{time.monotonic_ns()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONHOME"))}
    env.update(
        PYTHONPATH=str(REPO_ROOT / "runtime"),
        DIALOGUE_TERMINATION_LOG=str(term),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    cmd = [*(prefix or []), str(compress_env.venv_python()), "-m", f"dialogue_runtime.{module}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=workdir)
    return RunningJob(proc, term, time.monotonic())


def run_job(module: str, args: list[str], workdir: Path, prefix: list[str] | None = None) -> JobRun:
    return start_job(module, args, workdir, prefix).wait()


def make_broken_variant(base: Path, out: Path, workdir: Path) -> Path:
    """A copy of the base whose every projection matrix has heavy Gaussian noise (a quality collapse)."""
    script = """
import shutil, sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
base, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True)
for f in base.iterdir():
    if f.name != "model.safetensors":
        shutil.copy(f, out / f.name)
g = torch.Generator().manual_seed(0)
tensors = load_file(str(base / "model.safetensors"))
for name, t in tensors.items():
    if name.endswith("proj.weight"):
        noise = torch.randn(t.shape, generator=g) * t.float().std() * 1.5
        tensors[name] = (t.float() + noise).to(t.dtype)
save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
"""
    proc = subprocess.run(
        [str(compress_env.venv_python()), "-c", script, str(base), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out
