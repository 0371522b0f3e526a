"""Turns an engine's failure into ONE line a person can act on, and writes it where Kubernetes reads it (pure + file).

Kubernetes copies `/dev/termination-log` into the pod's `lastState.terminated.message`; the operator shows it
as the DialogueModel's condition message. vLLM's stderr ends with wrappers ("Engine core initialization
failed. See root cause above"), so the line chosen is the first specific exception line of the last traceback
(`ValueError: ...`), stripped of process prefixes.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from dialogue_runtime import contract

TERMINATION_PATH_ENV = "DIALOGUE_TERMINATION_LOG"  # overrides contract.TERMINATION_MESSAGE_PATH (local runs)
MAX_MESSAGE_CHARS = 1024  # Kubernetes keeps at most 4096 bytes; a condition message should stay readable

_PREFIX_RE = re.compile(r"^(\(\w+(?: pid=\d+)?\)\s*)+")  # "(EngineCore_DP0 pid=123) "
_LOG_RE = re.compile(
    r"^(?:[A-Z]+\s+)?\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \[[^\]]*\]\s*"
)  # "ERROR 11-28 17:00:00 [x.py:1] "
_EXC_RE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Exit))(?::\s*(.*))?$")
_VALIDATION_RE = re.compile(r"\d+ validation errors? for \w+$")
_VALUE_DETAIL_RE = re.compile(r"\s*\[type=.*$")
_GENERIC = (
    "Engine core initialization failed",
    "See root cause above",
    "EngineDeadError",
    "KeyboardInterrupt",
)


def _clean(line: str) -> str:
    line = _PREFIX_RE.sub("", line.strip())
    return _LOG_RE.sub("", line).strip()


def _with_validation_detail(line: str, following: list[str]) -> str:
    """pydantic puts the reason on the line after "N validation error for X": join it on."""
    if not _VALIDATION_RE.search(line):
        return line
    for nxt in following:
        detail = _VALUE_DETAIL_RE.sub("", nxt.strip()).removeprefix("Value error, ").strip()
        if detail:
            return f"{line}: {detail}"
    return line


def engine_error_line(output_lines: Iterable[str]) -> str | None:
    """The most specific error line in an engine's output, or None when it shows no exception."""
    lines = [_clean(raw) for raw in output_lines]
    exceptions: list[str] = []
    for i, line in enumerate(lines):
        match = _EXC_RE.match(line)
        if match and (match.group(2) or "").strip():
            exceptions.append(_with_validation_detail(line, lines[i + 1 : i + 3]))
    specific = [e for e in exceptions if not any(g in e for g in _GENERIC)]
    chosen = specific[-1] if specific else (exceptions[-1] if exceptions else None)
    if chosen is None:
        return None
    return chosen if len(chosen) <= MAX_MESSAGE_CHARS else chosen[: MAX_MESSAGE_CHARS - 3] + "..."


def last_meaningful_line(output_lines: Iterable[str]) -> str | None:
    lines = [c for c in (_clean(raw) for raw in output_lines) if c and not c.startswith(("File ", "^", "~"))]
    return lines[-1][:MAX_MESSAGE_CHARS] if lines else None


def termination_path() -> Path:
    return Path(os.environ.get(TERMINATION_PATH_ENV) or contract.TERMINATION_MESSAGE_PATH)


def write_termination_message(message: str) -> None:
    """Write one line to the termination log; a missing or read-only path is not an error (local runs)."""
    line = " ".join(message.split())[:MAX_MESSAGE_CHARS]
    with contextlib.suppress(OSError):
        termination_path().write_text(line + "\n")
