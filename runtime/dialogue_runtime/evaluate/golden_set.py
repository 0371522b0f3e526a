"""Golden dialogue sets (runtime, reads files): the shipped default or a user's JSON-lines file.

Each line: `{"id": "...", "messages": [{"role": "user", "content": "..."}, ...], "reference": "..."}`; the
messages end with a user turn and `reference` is the reply a good model gives to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DEFAULT = "default"
ROLES = frozenset({"system", "user", "assistant"})


class GoldenSetError(ValueError):
    """The golden set is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class GoldenDialogue:
    id: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    reference: str

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


def parse_golden(text: str, source: str) -> list[GoldenDialogue]:
    dialogues: list[GoldenDialogue] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"golden set {source} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldenSetError(f"{where}: not JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise GoldenSetError(f"{where}: expected an object")
        ident, messages, reference = row.get("id", str(number)), row.get("messages"), row.get("reference")
        if not isinstance(reference, str) or not reference.strip():
            raise GoldenSetError(f"{where}: 'reference' must be a non-empty string")
        if not isinstance(messages, list) or not messages:
            raise GoldenSetError(f"{where}: 'messages' must be a non-empty list")
        turns = []
        for m in messages:
            if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
                raise GoldenSetError(f"{where}: each message needs a role in {sorted(ROLES)} and string content")
            turns.append((str(m["role"]), str(m["content"])))
        if turns[-1][0] != "user":
            raise GoldenSetError(f"{where}: the last message must be the user's (the reference answers it)")
        if str(ident) in seen:
            raise GoldenSetError(f"{where}: duplicate id {ident!r}")
        seen.add(str(ident))
        dialogues.append(GoldenDialogue(id=str(ident), messages=tuple(turns), reference=reference.strip()))
    if not dialogues:
        raise GoldenSetError(f"golden set {source} is empty")
    return dialogues


def load_golden(ref: str) -> list[GoldenDialogue]:
    """`default` (shipped with the package) or a path to a JSON-lines file."""
    if ref == DEFAULT:
        text = resources.files("dialogue_runtime.evaluate.golden").joinpath("default.jsonl").read_text()
        return parse_golden(text, DEFAULT)
    path = Path(ref)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GoldenSetError(f"golden set not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenSetError(f"cannot read golden set {path}: {exc}") from exc
    return parse_golden(text, str(path))
