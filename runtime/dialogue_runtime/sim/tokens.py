"""The simulated engine's deterministic tokenizer, chat template, prefix-block hashes and output text (pure).

Token rule: a token is a run of word characters (`\\w+`) or one other non-space character; whitespace is
free. So `"Hello, world!"` is 4 tokens. Generated text is words from a fixed vocabulary, each preceded by a
space and counting as one token under the same rule, chosen by a hash of the prompt: the same prompt always
gets the same answer. A chat is rendered with a ChatML template (as SmolLM2's), so a conversation's earlier
turns are a token prefix of its later turns and hit the simulated prefix cache, as they would in vLLM.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

VOCABULARY: tuple[str, ...] = (
    "the", "model", "answers", "with", "simulated", "tokens", "that", "arrive", "at", "a", "calibrated",
    "rate", "while", "queue", "and", "cache", "behave", "like", "real", "engine", "under", "load", "so",
    "routing", "scaling", "tests", "see", "what", "users", "would", "notice", "today",
)  # fmt: skip


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": "..."}]
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def render_chat(messages: Sequence[Mapping[str, Any]]) -> str:
    """The prompt a ChatML chat template makes of `messages`, ending with the assistant's turn opening."""
    parts = [f"<|im_start|>{m.get('role', 'user')}\n{_content_text(m.get('content'))}<|im_end|>\n" for m in messages]
    return "".join(parts) + "<|im_start|>assistant\n"


def prefix_block_hashes(tokens: Sequence[str], block_size: int) -> tuple[int, ...]:
    """Chained hashes of the prompt's full blocks: block i's hash covers tokens [0, (i+1)*block_size)."""
    hashes: list[int] = []
    running = hashlib.blake2b(digest_size=8)
    for start in range(0, len(tokens) - block_size + 1, block_size):
        running.update("\x00".join(tokens[start : start + block_size]).encode() + b"\x01")
        hashes.append(int.from_bytes(running.copy().digest(), "big"))
    return tuple(hashes)


def prompt_seed(prompt: str) -> int:
    return int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "big")


def output_token(seed: int, index: int) -> str:
    """The text of output token `index` (0-based) for a prompt with this seed: a space and a word."""
    return " " + VOCABULARY[(seed + index * 7919) % len(VOCABULARY)]


def natural_length(seed: int, low: int = 16, high: int = 64) -> int:
    """How many tokens the simulated model 'wants' to say when the request sets no max_tokens."""
    return low + seed % (high - low + 1)
