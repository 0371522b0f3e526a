"""The runtime entrypoint as a process: sim serving and SIGTERM, and failures that end in an actionable message."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dialogue_runtime.engine.config import EngineConfig, SimProfile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


def test_sim_engine_serves_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    cfg = base(engine="sim", port=port, sim=SimProfile(startup_s=0.5))
    proc, term = start(tmp_path, cfg)
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    status = resp.status
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "chat"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert not term.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
