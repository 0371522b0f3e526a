"""Runs the engine server as a child process: forwards SIGTERM/SIGINT, keeps its output tail, leaves nothing behind.

The child gets its own process group, so after it exits any helper process it left (vLLM's engine core)
is killed with the group. Its stdout and stderr are copied through to ours line by line, and their last
lines are kept for the termination message (vLLM logs its workers' tracebacks on stdout).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, TextIO

STDERR_TAIL_LINES = 300


@dataclass(frozen=True)
class ChildResult:
    """How the child ended: its exit code, whether we asked it to stop, its last output lines (both streams)."""

    returncode: int
    stopped_by_signal: bool
    output_tail: tuple[str, ...]


def run_child(cmd: Sequence[str], env: Mapping[str, str]) -> ChildResult:
    """Run `cmd` until it exits; SIGTERM/SIGINT sent to us are passed on to it (blocking)."""
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    proc = subprocess.Popen(
        list(cmd),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    lock = threading.Lock()
    stopping = threading.Event()

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}

    def pump(stream: IO[str], sink: TextIO) -> None:
        for line in stream:
            with lock:
                tail.append(line.rstrip("\n"))
            sink.write(line)
            sink.flush()

    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=pump, args=(proc.stdout, sys.stdout), name="engine-stdout", daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, sys.stderr), name="engine-stderr", daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        returncode = proc.wait()
        for reader in readers:
            reader.join(timeout=5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # Helpers the child started (vLLM's engine core) share its process group: leave none behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return ChildResult(returncode, stopping.is_set(), tuple(tail))
