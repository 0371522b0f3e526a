"""Container probes: parsing the pod spec's probe, the kubelet's threshold logic, and running one check.

`ProbeSpec.parse` and `ProbeTracker` are pure (the caller passes monotonic times); `run_check` does the I/O
(an HTTP GET or TCP connect to the pod IP, or a command inside the container's mount namespace).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class ProbeConfigError(ValueError):
    """A probe the runner cannot run (no handler, or a named port the container does not declare)."""


@dataclass(frozen=True)
class ProbeSpec:
    """One probe with the kubelet's defaults filled in."""

    kind: str  # "http" | "tcp" | "exec" | "grpc"
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    port: int = 0
    host: str = ""
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    termination_grace_s: float | None = None

    @classmethod
    def parse(cls, probe: Mapping[str, Any], container_ports: Sequence[Mapping[str, Any]] = ()) -> ProbeSpec:
        common: dict[str, Any] = {
            "initial_delay_s": float(probe.get("initialDelaySeconds") or 0),
            "period_s": float(probe.get("periodSeconds") or 10),
            "timeout_s": float(probe.get("timeoutSeconds") or 1),
            "success_threshold": int(probe.get("successThreshold") or 1),
            "failure_threshold": int(probe.get("failureThreshold") or 3),
        }
        if probe.get("terminationGracePeriodSeconds") is not None:
            common["termination_grace_s"] = float(probe["terminationGracePeriodSeconds"])
        if "httpGet" in probe:
            get = probe["httpGet"]
            return cls(
                kind="http",
                port=resolve_port(get.get("port"), container_ports),
                host=str(get.get("host") or ""),
                path=str(get.get("path") or "/"),
                scheme=str(get.get("scheme") or "HTTP").upper(),
                headers=tuple((str(h["name"]), str(h.get("value", ""))) for h in get.get("httpHeaders") or []),
                **common,
            )
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            return cls(
                kind="tcp",
                port=resolve_port(tcp.get("port"), container_ports),
                host=str(tcp.get("host") or ""),
                **common,
            )
        if "exec" in probe:
            return cls(kind="exec", command=tuple(str(c) for c in probe["exec"].get("command") or ()), **common)
        if "grpc" in probe:
            return cls(kind="grpc", port=int(probe["grpc"].get("port") or 0), **common)
        raise ProbeConfigError(f"probe has no handler (httpGet, tcpSocket, exec or grpc): {sorted(probe)}")


def resolve_port(port: object, container_ports: Sequence[Mapping[str, Any]]) -> int:
    """A probe port: a number, a numeric string, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port or "")
    if text.isdigit():
        return int(text)
    for declared in container_ports:
        if declared.get("name") == text:
            return int(declared["containerPort"])
    raise ProbeConfigError(f"probe port {text!r} is not a port number nor the name of a container port")


@dataclass
class ProbeTracker:
    """The kubelet's result logic for one probe of one container instance.

    `result` starts at `initial` (None: unknown) and flips to True after `success_threshold` consecutive successes,
    to False after `failure_threshold` consecutive failures.
    """

    spec: ProbeSpec
    started_at: float
    initial: bool | None = None
    result: bool | None = field(default=None, init=False)
    successes: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)
    last_run_at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.result = self.initial

    def due(self, now: float) -> bool:
        if now < self.started_at + self.spec.initial_delay_s:
            return False
        return self.last_run_at is None or now >= self.last_run_at + self.spec.period_s

    def record(self, ok: bool, now: float) -> bool:
        """Record one check; returns True when `result` changed."""
        self.last_run_at = now
        before = self.result
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.spec.success_threshold:
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.spec.failure_threshold:
                self.result = False
        return self.result != before


@dataclass(frozen=True)
class CheckTarget:
    """Where a check runs: the pod IP, and for exec the container's pid (mount namespace), env and cwd."""

    pod_ip: str
    pid: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"


def run_check(spec: ProbeSpec, target: CheckTarget) -> tuple[bool, str]:
    """Run one check; returns (success, a message for failures)."""
    host = spec.host or target.pod_ip
    try:
        if spec.kind == "http":
            return _http_check(spec, host)
        if spec.kind in ("tcp", "grpc"):  # gRPC health is not spoken here: a connect is the closest check
            with socket.create_connection((host, spec.port), timeout=spec.timeout_s):
                return True, ""
        if spec.kind == "exec":
            return _exec_check(spec, target)
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{spec.kind} probe to {host}:{spec.port} failed: {exc}"
    return False, f"unknown probe kind {spec.kind}"


def _http_check(spec: ProbeSpec, host: str) -> tuple[bool, str]:
    conn: http.client.HTTPConnection
    if spec.scheme == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probe certificates either
        conn = http.client.HTTPSConnection(host, spec.port, timeout=spec.timeout_s, context=context)
    else:
        conn = http.client.HTTPConnection(host, spec.port, timeout=spec.timeout_s)
    try:
        headers = {"User-Agent": "kube-probe/1.35", "Accept": "*/*", **dict(spec.headers)}
        conn.request("GET", spec.path, headers=headers)
        response = conn.getresponse()
        response.read(10240)
        if 200 <= response.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {response.status}"
    finally:
        conn.close()


def _exec_check(spec: ProbeSpec, target: CheckTarget) -> tuple[bool, str]:
    if target.pid is None:
        return False, "exec probe: container is not running"
    argv = ["nsenter", "-t", str(target.pid), "-m", f"--wd={target.cwd}", "--", *spec.command]
    proc = subprocess.Popen(
        argv, env=dict(target.env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=spec.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return False, f"command timed out after {spec.timeout_s:g}s"
    if proc.returncode == 0:
        return True, ""
    text = output.decode("utf-8", errors="replace").strip()[-512:]
    return False, f"command {list(spec.command)} exited with {proc.returncode}" + (f": {text}" if text else "")
