"""The runtime entrypoint as a process (project venv, no vLLM): sim serving, draining, aborts, legible failures."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from dialogue_runtime.engine.config import EngineConfig, SimProfile

from e2e.cluster.procs import free_port, wait_http


def start(tmp_path: Path, cfg: EngineConfig | str, **env: str) -> tuple[subprocess.Popen[str], Path]:
    config_file = tmp_path / "engine.json"
    config_file.write_text(cfg if isinstance(cfg, str) else cfg.model_dump_json())
    term = tmp_path / "termination-log"
    full_env = {**os.environ, "DIALOGUE_ENGINE_CONFIG": str(config_file), "DIALOGUE_TERMINATION_LOG": str(term),
                "POD_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1", **env}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialogue_runtime.engine"], env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return proc, term


def base(**fields: object) -> EngineConfig:
    values: dict[str, object] = {"model_name": "chat", "variant": "base", "served_model_name": "chat",
                                 "source": "pvc://cache/smollm2"}  # fmt: skip
    return EngineConfig.model_validate({**values, **fields})


def test_missing_model_exits_non_zero_with_the_path_in_the_termination_message(tmp_path: Path) -> None:
    proc, term = start(tmp_path, base(local_path=str(tmp_path / "models" / "smollm2")))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    message = term.read_text().strip()
    assert message == (
        f"model pvc://cache/smollm2 not found: {tmp_path}/models/smollm2 does not exist; "
        "check the path in the DialogueModel's source"
    )
    assert "\n" not in message


def test_invalid_configuration_names_the_field(tmp_path: Path) -> None:
    bad = json.loads(base().model_dump_json()) | {"tensor_parallel_size": 0}
    proc, term = start(tmp_path, json.dumps(bad))
    proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "invalid at tensor_parallel_size" in term.read_text()


def test_a_missing_api_key_refuses_to_serve_openly(tmp_path: Path) -> None:
    proc, term = start(tmp_path, base(engine="sim", api_key_env="DIALOGUE_ENGINE_API_KEY"), DIALOGUE_ENGINE_API_KEY="")
    proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "DIALOGUE_ENGINE_API_KEY is empty or unset" in term.read_text()


def wait_running(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            if 'vllm:num_requests_running{engine="0",model_name="chat"} 1.0' in resp.read().decode():
                return
        time.sleep(0.05)
    raise AssertionError("the request never started running")


def test_sim_engine_drains_in_flight_requests_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    cfg = base(engine="sim", port=port, sim=SimProfile(startup_s=0.5, decode_tokens_per_s=20.0))
    proc, term = start(tmp_path, cfg)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout_s=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "chat"
        result: dict[str, object] = {}

        def slow_request() -> None:  # 30 tokens at 20 tok/s: 1.5 s
            body = json.dumps({"prompt": "hello", "max_tokens": 30}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body)
            with urllib.request.urlopen(req, timeout=30) as resp:
                result["usage"] = json.load(resp)["usage"]

        worker = threading.Thread(target=slow_request)
        worker.start()
        wait_running(port)
        proc.send_signal(signal.SIGTERM)
        worker.join(timeout=30)
        proc.communicate(timeout=30)
        assert result["usage"]["completion_tokens"] == 30  # type: ignore[index]
        assert proc.returncode == 0
        assert not term.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sim_engine_aborts_the_request_of_a_client_that_hangs_up(tmp_path: Path) -> None:
    port = free_port()
    proc, _ = start(tmp_path, base(engine="sim", port=port, sim=SimProfile(decode_tokens_per_s=5.0)))
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout_s=60)
        body = json.dumps({"prompt": "hello", "max_tokens": 100}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body)
        with contextlib.suppress(TimeoutError, urllib.error.URLError):
            urllib.request.urlopen(req, timeout=2)  # we hang up after 2 s of a 20 s request
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            if 'finished_reason="abort",model_name="chat"} 1.0' in text:
                break
            time.sleep(0.1)
        assert 'finished_reason="abort",model_name="chat"} 1.0' in text
        assert 'vllm:num_requests_running{engine="0",model_name="chat"} 0.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
