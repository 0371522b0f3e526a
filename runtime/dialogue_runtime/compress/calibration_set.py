"""Calibration sets (runtime, reads files): the shipped default or a user file, as chat dialogues or text.

A calibration file is JSON lines, each `{"messages": [{"role": ..., "content": ...}, ...]}` (rendered with the
model's chat template) or `{"text": "..."}`; any other file is read as plain text, one sample per non-empty
line. The content digest (not the path) enters the recipe id, so editing the file yields a new artifact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dialogue_runtime.compress.errors import CalibrationError

DEFAULT = "default"
# The API's `calibration.dataset: builtin:<name>` names a set shipped here; `chat` is the default one.
BUILTIN = {"builtin:default": DEFAULT, "builtin:chat": DEFAULT}
Message = dict[str, str]


@dataclass(frozen=True)
class CalibrationSet:
    source: str
    samples: tuple[str | tuple[Message, ...], ...]

    @property
    def digest(self) -> str:
        blob = json.dumps([s if isinstance(s, str) else list(s) for s in self.samples], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _parse_jsonl(text: str, source: str) -> list[str | tuple[Message, ...]]:
    samples: list[str | tuple[Message, ...]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"calibration set {source} line {number}: not JSON ({exc})") from exc
        if isinstance(row, dict) and isinstance(row.get("text"), str):
            samples.append(row["text"])
        elif isinstance(row, dict) and isinstance(row.get("messages"), list) and row["messages"]:
            messages = []
            for m in row["messages"]:
                if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                    raise CalibrationError(
                        f"calibration set {source} line {number}: each message needs string 'role' and 'content'"
                    )
                messages.append({"role": m["role"], "content": m["content"]})
            samples.append(tuple(messages))
        else:
            raise CalibrationError(f"calibration set {source} line {number}: expected 'text' or 'messages'")
    return samples


def load_calibration(ref: str) -> CalibrationSet:
    """`default` / `builtin:chat` (shipped with the package) or a path to a .jsonl / text file."""
    if ref.startswith("builtin:") and ref not in BUILTIN:
        raise CalibrationError(f"unknown built-in calibration set {ref!r}; known: {', '.join(sorted(BUILTIN))}")
    if BUILTIN.get(ref, ref) == DEFAULT:
        text = resources.files("dialogue_runtime.compress.calibration").joinpath("default.jsonl").read_text()
        source = "default"
        samples = _parse_jsonl(text, source)
    else:
        path = Path(ref)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CalibrationError(f"calibration set not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"cannot read calibration set {path}: {exc}") from exc
        source = str(path)
        if path.suffix == ".jsonl":
            samples = _parse_jsonl(text, source)
        else:
            samples = [line.strip() for line in text.splitlines() if line.strip()]
    if not samples:
        raise CalibrationError(f"calibration set {source} is empty")
    return CalibrationSet(source=source, samples=tuple(samples))
