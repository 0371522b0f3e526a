"""Real processes for the gateway's integration tests: simulated engines, gateways and redis-server on loopback."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.cluster.procs import free_port, wait_http

MODEL = "smol"
KEY = "sk-gateway-test"
_HOSTS = itertools.count(1)


def loopback_host() -> str:
    """A loopback address of its own per engine, so each endpoint URL is distinct (127.77.<pid>.<n>)."""
    return f"127.77.{os.getpid() % 250}.{next(_HOSTS) % 250 + 1}"


@dataclass
class Proc:
    """A started process and its base URL; `stop()` ends it by pid."""

    popen: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class Procs:
    """Starts processes and stops all of them at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Proc] = []

    def spawn(self, args: list[str], url: str, name: str) -> Proc:
        log = self.workdir / f"{name}-{len(self.started)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        proc = Proc(popen, url, log)
        self.started.append(proc)
        return proc

    def sim(
        self, *, wait: bool = True, host: str | None = None, port: int | None = None, extra: tuple[str, ...] = ()
    ) -> Proc:
        host = host or loopback_host()
        port = port or free_port(host)
        args = [sys.executable, "-m", "dialogue_runtime.sim", "--host", host, "--port", str(port)]
        args += ["--served-model-name", MODEL, "--shutdown-timeout-s", "2", *extra]
        proc = self.spawn(args, f"http://{host}:{port}", "sim")
        if wait:
            wait_http(proc.url + "/health", proc=proc.popen)
        return proc

    def gateway(self, upstreams: list[str], *, extra: tuple[str, ...] = (), port: int | None = None) -> Proc:
        host = "127.0.0.1"
        port = port or free_port(host)
        args = [sys.executable, "-m", "dialogue_runtime.gateway", "--host", host, "--port", str(port)]
        args += ["--static-model", f"{MODEL}={','.join(upstreams)}", "--static-api-key", f"{MODEL}={KEY}"]
        args += ["--probe-interval-s", "0.2", "--log-level", "WARNING", *extra]
        proc = self.spawn(args, f"http://{host}:{port}", "gateway")
        wait_http(proc.url + "/healthz", proc=proc.popen)
        return proc

    def redis(self) -> Proc:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        host = "127.0.0.1"
        port = free_port(host)
        data = self.workdir / "redis"
        data.mkdir(exist_ok=True)
        args = [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(data)]
        proc = self.spawn(args, f"redis://{host}:{port}/0", "redis")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc
            time.sleep(0.1)
        raise TimeoutError("redis-server did not answer PING")

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Procs]:
    started = Procs(tmp_path_factory.mktemp("gateway-procs"))
    yield started
    started.stop_all()


AUTH = {"Authorization": f"Bearer {KEY}"}


def chat_body(messages: list[dict[str, str]], **extra: object) -> dict[str, object]:
    return {"model": MODEL, "messages": messages, "max_tokens": 8, **extra}


Factory = Callable[..., Proc]
