"""Runs the engine server as a child process: forwards SIGTERM/SIGINT, keeps its stderr tail, leaves nothing behind.

The child gets its own process group, so after it exits any helper process it left (vLLM's engine core)
is killed with the group. Its stderr is copied through to ours line by line and the last lines are kept
for the termination message.
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

STDERR_TAIL_LINES = 300


@dataclass(frozen=True)
class ChildResult:
    """How the child ended: its exit code, whether we asked it to stop, its last stderr lines."""

    returncode: int
    stopped_by_signal: bool
    stderr_tail: tuple[str, ...]


def run_child(cmd: Sequence[str], env: Mapping[str, str]) -> ChildResult:
    """Run `cmd` until it exits; SIGTERM/SIGINT sent to us are passed on to it (blocking)."""
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    proc = subprocess.Popen(
        list(cmd), env=dict(env), stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True
    )
    stopping = threading.Event()

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))
            sys.stderr.write(line)
            sys.stderr.flush()

    reader = threading.Thread(target=pump, name="engine-stderr", daemon=True)
    reader.start()
    try:
        returncode = proc.wait()
        reader.join(timeout=5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # Helpers the child started (vLLM's engine core) share its process group: leave none behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return ChildResult(returncode, stopping.is_set(), tuple(tail))
