"""The job's last word (runtime): one line in the Kubernetes termination log, and progress lines on stdout.

The termination log is `$DIALOGUE_TERMINATION_LOG` when set, else `contract.TERMINATION_MESSAGE_PATH` when
that file exists (the kubelet creates it in every container). Failures write `<Reason>: <message>` (the reason
is CamelCase, ready for a condition); successes write one JSON object. Shared by the compression and the
evaluation jobs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from dialogue_runtime.contract import TERMINATION_MESSAGE_PATH

TERMINATION_LOG_ENV = "DIALOGUE_TERMINATION_LOG"
CPU_THREADS_ENV = "DIALOGUE_CPU_THREADS"
MAX_MESSAGE_CHARS = 3500  # the kubelet keeps 4096 bytes of a termination message


def set_cpu_threads() -> None:
    """Pins CPU math to `$DIALOGUE_CPU_THREADS` threads (default 1), before torch is imported.

    On a shared or CPU-limited node, OpenMP threads spin-wait for each other: one GPTQ step on SmolLM2's MLP
    took 16.9 s with 2 threads and 0.73 s with 1 on a busy 2-core machine. Set the variable to use more.
    """
    threads = os.environ.get(CPU_THREADS_ENV, "1")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, threads)


def termination_log_path() -> Path | None:
    override = os.environ.get(TERMINATION_LOG_ENV)
    if override:
        return Path(override)
    default = Path(TERMINATION_MESSAGE_PATH)
    return default if default.exists() else None


def one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_MESSAGE_CHARS else flat[: MAX_MESSAGE_CHARS - 3] + "..."


def write_termination(text: str) -> None:
    path = termination_log_path()
    if path is None:
        return
    try:
        path.write_text(text + "\n")
    except OSError as exc:
        print(f"warning: cannot write the termination log {path}: {exc}", file=sys.stderr, flush=True)


def fail(job: str, reason: str, message: str) -> None:
    line = one_line(f"{reason}: {message}")
    print(f"{job}: FAILED {line}", file=sys.stderr, flush=True)
    write_termination(line)


def succeed(job: str, result: dict[str, Any]) -> None:
    line = json.dumps(result, sort_keys=True, separators=(",", ":"))
    print(f"{job}: result {line}", flush=True)
    write_termination(line)


class Progress:
    """Prints `<job>: <step> ...` and `<job>: <step> done in X s` lines, and keeps the timings."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.timings_s: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def step(self, name: str, detail: str = "") -> None:
        self.done()
        print(f"{self.job}: {name} ..." + (f" ({detail})" if detail else ""), flush=True)
        self._current = (name, time.monotonic())

    def done(self) -> None:
        if self._current is None:
            return
        name, started = self._current
        self.timings_s[name] = round(time.monotonic() - started, 3)
        print(f"{self.job}: {name} done in {self.timings_s[name]:.1f} s", flush=True)
        self._current = None

    def note(self, text: str) -> None:
        print(f"{self.job}: {text}", flush=True)
