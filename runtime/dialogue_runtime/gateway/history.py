"""Conversation history trimmed to a token budget, and the token counters it uses (pure but for tokenizer loading).

`trim_history` keeps every system message and drops the oldest other turns until the rest fits. A turn is a
user message with the replies after it, so an assistant answer never stays without its question. Tokens are
counted by an injected `TokenCounter` (text -> tokens) plus a fixed per-message overhead for the chat template.

Counters: `load_tokenizer_counter(path)` uses the model's own tokenizer (a `tokenizer.json` file through the
`tokenizers` package, or a folder through `transformers`) when that package is installed; otherwise
`estimate_tokens` — ceil(UTF-8 bytes / 4), the usual rule of thumb for BPE tokenizers on English text, which
over-counts rather than under-counts on code and non-Latin scripts.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

TokenCounter = Callable[[str], int]
Message = Mapping[str, Any]

MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """Fallback counter: ceil(UTF-8 bytes / 4)."""
    return math.ceil(len(text.encode("utf-8")) / 4)


def load_tokenizer_counter(path: str) -> TokenCounter | None:
    """A counter backed by the model's tokenizer at `path`, or None if no tokenizer library can load it."""
    target = Path(path)
    file = target / "tokenizer.json" if target.is_dir() else target
    if file.is_file():
        try:
            tokenizers = importlib.import_module("tokenizers")
        except ImportError:
            tokenizers = None
        if tokenizers is not None:
            tokenizer = tokenizers.Tokenizer.from_file(str(file))
            return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    if target.is_dir():
        try:
            transformers = importlib.import_module("transformers")
        except ImportError:
            return None
        auto = transformers.AutoTokenizer.from_pretrained(str(target))
        return lambda text: len(auto.encode(text, add_special_tokens=False))
    return None


def content_text(content: Any) -> str:
    """The text of a message's content (a string, or the text parts of a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def message_tokens(message: Message, count: TokenCounter) -> int:
    """Tokens a message costs in the prompt: its content plus the chat-template overhead."""
    return count(content_text(message.get("content"))) + MESSAGE_OVERHEAD_TOKENS


def history_tokens(messages: Sequence[Message], count: TokenCounter) -> int:
    """Tokens of a whole message list."""
    return sum(message_tokens(m, count) for m in messages)


def _turns(messages: Sequence[Message]) -> list[list[int]]:
    """Indices of non-system messages grouped into turns that each start at a user message."""
    turns: list[list[int]] = []
    for index, message in enumerate(messages):
        if message.get("role") in ("system", "developer"):
            continue
        if message.get("role") == "user" or not turns:
            turns.append([index])
        else:
            turns[-1].append(index)
    return turns


def trim_history(messages: Sequence[Message], budget_tokens: int | None, count: TokenCounter) -> list[Message]:
    """Drop the oldest turns until the messages fit `budget_tokens`; system messages always stay.

    The newest turn is kept even if it alone exceeds the budget (the engine then answers with its own length
    error, which is more useful to the user than an empty prompt). `None` means no budget.
    """
    if budget_tokens is None:
        return list(messages)
    costs = [message_tokens(m, count) for m in messages]
    total = sum(costs)
    dropped: set[int] = set()
    turns = _turns(messages)
    for turn in turns[:-1]:
        if total <= budget_tokens:
            break
        dropped.update(turn)
        total -= sum(costs[i] for i in turn)
    return [m for i, m in enumerate(messages) if i not in dropped]
