"""One container of a pod: its process (own session and process group, output to a log file) and the state the
kubelet reports for it across restarts (e2e layer)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.cluster.podrunner.backoff import CrashBackoff
from e2e.cluster.podrunner.probes import ProbeTracker

MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_code_of(returncode: int) -> int:
    """A Popen return code as a container exit code: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    message: str
    started_at: str
    finished_at: str
    container_id: str

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Terminated | None:
        """The last termination recorded in a containerStatus (its lastState, else its state), if any."""
        for key in ("lastState", "state"):
            done = (status.get(key) or {}).get("terminated")
            if done:
                return cls(
                    exit_code=int(done.get("exitCode", 0)),
                    reason=str(done.get("reason", "")),
                    message=str(done.get("message", "")),
                    started_at=str(done.get("startedAt", "")),
                    finished_at=str(done.get("finishedAt", "")),
                    container_id=str(done.get("containerID", "")),
                )
        return None

    def as_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        }
        if self.message:
            state["message"] = self.message
        return {"terminated": state}


# Every container process carries `DIALOGUE_PODRUNNER_CONTAINER=<node>/<pod uid>/<container>` in its environment
# (inherited by its children): what a process group cannot catch (a child that called setsid, orphans of a
# runner that was SIGKILLed) is found by it and killed, as a container runtime kills a whole cgroup.
TAG_ENV = "DIALOGUE_PODRUNNER_CONTAINER"


def kill_tagged(prefix: str) -> int:
    """SIGKILL every process whose container tag starts with `prefix`; returns how many were signalled."""
    needle = f"{TAG_ENV}={prefix}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(needle) for item in environ.split(b"\0")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


class ContainerProcess:
    """A running container instance: the process group the runner spawned."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path, tag: str = "") -> None:
        self.tag = tag
        if tag:
            env = {**env, TAG_ENV: tag}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if log_path.exists():
            os.replace(log_path, log_path.with_name(log_path.name + ".previous"))
        with log_path.open("ab") as log:
            # setpriv: the process dies with the runner thread that started it even if the runner is SIGKILLed.
            self.popen = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "--", *argv],
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        self.started_mono = time.monotonic()

    def poll(self) -> int | None:
        code = self.popen.poll()
        if code is not None:
            self.signal_group(signal.SIGKILL)  # like a container runtime: the rest of the tree goes with pid 1
            if self.tag:
                kill_tagged(self.tag)
        return code

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def stop_all(processes: Sequence[ContainerProcess], grace_s: float) -> None:
    """SIGTERM every process group, wait up to `grace_s` for all, SIGKILL what is left, reap everything."""
    for proc in processes:
        if proc.popen.poll() is None:
            proc.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + max(grace_s, 0.0)
    while time.monotonic() < deadline and any(p.popen.poll() is None for p in processes):
        time.sleep(0.05)
    for proc in processes:
        proc.signal_group(signal.SIGKILL)
        if proc.tag:
            kill_tagged(proc.tag)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=10)


def termination_message(message_file: Path, log_path: Path, exit_code: int, policy: str) -> str:
    """What the container wrote to its terminationMessagePath, else (FallbackToLogsOnError, failed) its log tail."""
    text = ""
    with contextlib.suppress(OSError):
        text = message_file.read_bytes()[:MAX_MESSAGE_BYTES].decode("utf-8", errors="replace")
    if not text and policy == "FallbackToLogsOnError" and exit_code != 0:
        with contextlib.suppress(OSError):
            data = log_path.read_bytes()[-64 * 1024 :]
            lines = data.decode("utf-8", errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
            text = "\n".join(lines)[-FALLBACK_LOG_BYTES:]
    return text


@dataclass
class ContainerRun:
    """Everything the runner knows about one container of the pod, across its restarts."""

    spec: Mapping[str, Any]
    is_init: bool = False
    restart_count: int = 0
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    process: ContainerProcess | None = None
    running_since: str = ""
    container_id: str = ""
    image_id: str = ""
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    started: bool = False
    ready: bool = False
    ever_started: bool = False
    restart_at: float | None = 0.0  # monotonic time of the next start; None: never again
    backoff: CrashBackoff = field(default_factory=CrashBackoff)
    pull_backoff: CrashBackoff = field(default_factory=CrashBackoff)
    probes: dict[str, ProbeTracker] = field(default_factory=dict)
    mount_env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.process is not None

    def status(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.process is not None:
            state = {"running": {"startedAt": self.running_since}}
        elif self.terminated is not None and self.restart_at is None:
            state = self.terminated.as_state()
        else:
            waiting: dict[str, Any] = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.image_id,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started if self.process is not None else False,
            "state": state,
            "lastState": self.last_terminated.as_state() if self.last_terminated is not None else {},
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status
