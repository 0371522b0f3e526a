"""Setup step `compress`: the llm-compressor virtual environment used by compression and evaluation jobs.

llm-compressor advises its own environment, separate from vLLM (different transformers pins). The venv lives
at `$DIALOGUE_CACHE/venvs/compress-llmcompressor-<version>`; a stamp file written last marks it complete, so a
half-built venv (interrupted install) is removed and rebuilt. torch is pinned to the CPU build from the shared
wheel folder through a constraints file: without it pip prefers PyPI's multi-GB CUDA build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from e2e.setup import SetupError

ROOT = Path(__file__).resolve().parents[1]

LLMCOMPRESSOR_VERSION = "0.14.0.1"
TORCH_VERSION = "2.13.0+cpu"
# Versions verified together on CPU (oneshot FP8_DYNAMIC/W8A8/W4A16 and the evaluation); pinned through the
# constraints file so a rebuild gets the same stack.
CONSTRAINTS = (f"torch=={TORCH_VERSION}", "transformers==5.17.0", "compressed-tensors==0.19.0")
# Extra packages beside llm-compressor: gguf lets transformers read the GGUF file of the packaged SmolLM2.
EXTRA_REQUIREMENTS = ("gguf", "accelerate")
# PyPI's builds of these crash beside the CPU torch (see ARCHITECTURE.md, vLLM section); never keep them.
UNWANTED = ("torchvision", "torchaudio", "torchcodec")
STAMP_NAME = ".dialogue-ready"
PIP_TIMEOUT_S = 1800


def cache_dir() -> Path:
    return Path(os.environ.get("DIALOGUE_CACHE", str(Path.home() / ".cache" / "dialogue-operator")))


def venv_dir() -> Path:
    """Where the compress venv lives; the pod runner's image table maps the compress image here."""
    return cache_dir() / "venvs" / f"compress-llmcompressor-{LLMCOMPRESSOR_VERSION}"


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


def wheels_dir() -> Path:
    """The shared folder holding the CPU torch wheel (`<repo>/../shared/wheels`, or `$DIALOGUE_SHARED_DIR/wheels`)."""
    return Path(os.environ.get("DIALOGUE_SHARED_DIR", str(ROOT.parent / "shared"))) / "wheels"


def _stamp_text() -> str:
    return f"llmcompressor=={LLMCOMPRESSOR_VERSION}\n" + "".join(f"{c}\n" for c in CONSTRAINTS)


def is_ready() -> bool:
    stamp = venv_dir() / STAMP_NAME
    return stamp.is_file() and stamp.read_text() == _stamp_text() and venv_python().exists()


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"{what}: timed out after {PIP_TIMEOUT_S} s ({' '.join(cmd[:6])} ...)") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise SetupError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def ensure_all() -> None:
    """Builds the compress venv unless a complete one (stamp present and current) exists."""
    if is_ready():
        return
    wheels = wheels_dir()
    torch_wheels = sorted(wheels.glob("torch-2.13.0+cpu-*.whl")) if wheels.is_dir() else []
    if not torch_wheels:
        raise SetupError(
            f"the CPU torch wheel torch-{TORCH_VERSION} was not found in {wheels}; "
            "put it there or point DIALOGUE_SHARED_DIR at the folder whose wheels/ holds it"
        )
    target = venv_dir()
    if target.exists():  # no stamp: an interrupted build; start clean
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        base_python = getattr(sys, "_base_executable", sys.executable)
        _run([base_python, "-m", "venv", str(target)], f"creating venv {target}")
        constraints = target / "constraints.txt"
        constraints.write_text("".join(f"{c}\n" for c in CONSTRAINTS))
        pip = [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run(
            [
                *pip,
                "--find-links",
                str(wheels),
                "-c",
                str(constraints),
                f"torch=={TORCH_VERSION}",
                f"llmcompressor=={LLMCOMPRESSOR_VERSION}",
                *EXTRA_REQUIREMENTS,
            ],
            f"installing llmcompressor=={LLMCOMPRESSOR_VERSION} into {target}",
        )
        _run(
            [str(venv_python()), "-m", "pip", "uninstall", "-y", "-q", *UNWANTED],
            f"removing {', '.join(UNWANTED)} from {target}",
        )
        _run(
            [
                str(venv_python()),
                "-c",
                "import llmcompressor, torch, transformers; assert torch.__version__.endswith('+cpu')",
            ],
            f"checking the compress venv {target} (llmcompressor, CPU torch, transformers import)",
        )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    (target / STAMP_NAME).write_text(_stamp_text())
    print(f"compress: venv ready at {target} in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    ensure_all()
