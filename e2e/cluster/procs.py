"""Local processes of the cluster: start with a pidfile and a log, stop by pid, port checks, RSS (e2e cluster layer).

A pidfile holds the pid and the process's start time (from /proc), so a recycled pid is never mistaken for ours
and never signalled. `ProcessGroup`, `free_port` and `wait_http` serve the tests and benchmarks that start a
gateway, an operator or an engine of their own next to the cluster.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class ClusterError(RuntimeError):
    """The local cluster could not do what was asked; the message says what failed and what to do."""


@dataclass(frozen=True)
class PidFile:
    """`<run dir>/<component>.pid`: "pid starttime"."""

    path: Path

    def read(self) -> tuple[int, int] | None:
        try:
            pid_s, start_s = self.path.read_text().split()
            return int(pid_s), int(start_s)
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        """The pid if that process is still the one we started and is not a zombie."""
        entry = self.read()
        if entry is None:
            return None
        pid, start = entry
        stat = _stat(pid)
        if stat is None or stat[1] != start or stat[0] in ("Z", "X"):
            return None
        return pid


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def start(name: str, argv: list[str], *, run_dir: Path, log_dir: Path, env: dict[str, str] | None = None) -> int:
    """Starts `argv` in its own session, output appended to `<log_dir>/<name>.log`; writes its pidfile."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ClusterError(f"could not start {name} ({argv[0]}): {exc}") from exc
    stat = _stat(proc.pid)
    PidFile(run_dir / f"{name}.pid").path.write_text(f"{proc.pid} {stat[1] if stat else 0}\n")
    return proc.pid


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(pidfile: PidFile, *, grace_s: float = 10.0) -> bool:
    """SIGTERM, wait up to `grace_s`, then SIGKILL the process and its session; removes the pidfile.

    Returns True when a live process was stopped.
    """
    pid = pidfile.pid()
    stopped = False
    if pid is not None:
        stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            _reap(pid)
            if pidfile.pid() is None:
                break
            time.sleep(0.05)
        # Whatever is left of it (the process itself, or children still in its session) is killed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            if pidfile.pid() is not None:
                os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            _reap(pid)
            if pidfile.pid() is None:
                break
            time.sleep(0.02)
    pidfile.path.unlink(missing_ok=True)
    return stopped


def rss_bytes(pid: int) -> int:
    """Resident set size of a process from /proc/<pid>/status (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_owner(port: int) -> tuple[int, str] | None:
    """(pid, name) of the process listening on a TCP port, when /proc shows it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        pid = int(entry.name)
                        return pid, process_name(pid)
        except OSError:
            continue
    return None


def ensure_port_free(port: int, *, host: str = "127.0.0.1", component: str) -> None:
    """Raises ClusterError naming the process that holds `host:port`, if any does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: connections of a stopped server lingering in TIME_WAIT do not block the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ClusterError(f"cannot use {host}:{port} for {component}: {exc}") from exc
    owner = port_owner(port)
    who = f"pid {owner[0]} ({owner[1]})" if owner else "another process (not visible in /proc)"
    raise ClusterError(
        f"port {port} (for {component}) is already in use by {who}. Stop that process, or start the cluster "
        f"on other ports (python -m e2e.cluster up --port-base N), then retry."
    )


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(count: int = 6, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive free ports, below the kernel's ephemeral range (32768+ on Linux), so
    that outgoing connections do not take one of them between this check and the servers' start."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32700 - count)
        if all(_bindable(base + i, host) for i in range(count)):
            return base
    raise ClusterError(f"found no {count} consecutive free ports in 20000..32700 on {host}")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, *, timeout_s: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Polls `url` until it answers 200; fails at once when `proc` (the server) exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:g} s")


class ProcessGroup:
    """Processes one test or benchmark starts, each logging to `<workdir>/<name>.log`; `stop_all` ends them,
    the last started first (SIGTERM, SIGKILL after `grace_s`)."""

    def __init__(self, workdir: Path, cwd: Path | None = None) -> None:
        self.workdir = workdir
        self.cwd = cwd
        self.started: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.cwd)
        self.started.append(proc)
        return proc

    def stop_all(self, grace_s: float = 20.0) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
