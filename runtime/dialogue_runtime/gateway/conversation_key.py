"""Derives the conversation key that pins a conversation to a variant and a replica (pure).

Precedence: the `X-Session-ID` header, a session of the sessions API, the OpenAI `user` field, else a hash of
the conversation's opening messages (system prompt + first user message), which stay the same turn after turn.
A request with none of these (e.g. a bare text completion) has no key and is routed by least load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

SESSION_HEADER = "X-Session-ID"

KeySource = Literal["header", "session", "user", "opening", "none"]


@dataclass(frozen=True)
class ConversationKey:
    """A stable key for one conversation; `value` is None when the request carries no conversation."""

    value: str | None
    source: KeySource

    def scoped(self, adapter: str | None) -> str | None:
        """The key used for hashing, made LoRA-aware: the same conversation on another adapter is another key."""
        if self.value is None:
            return None
        return self.value if not adapter else f"{adapter}\x00{self.value}"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    # Structured content (a list of parts) is hashed in a canonical JSON form.
    return json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)


def opening_digest(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """Hash the system prompt(s) before the first user message and that first user message, or None."""
    opening: list[str] = []
    for message in messages:
        role = str(message.get("role", ""))
        if role in ("system", "developer"):
            opening.append(f"{role}:{_content_text(message.get('content', ''))}")
        elif role == "user":
            opening.append(f"user:{_content_text(message.get('content', ''))}")
            return hashlib.blake2b("\x1e".join(opening).encode(), digest_size=16).hexdigest()
        else:
            break
    return None


def conversation_key(
    headers: Mapping[str, str], body: Mapping[str, Any], *, session_id: str | None = None
) -> ConversationKey:
    """Pick the conversation key of a request by the documented precedence."""
    header = headers.get(SESSION_HEADER)
    if header:
        return ConversationKey(f"h:{header}", "header")
    if session_id:
        return ConversationKey(f"s:{session_id}", "session")
    user = body.get("user")
    if isinstance(user, str) and user:
        return ConversationKey(f"u:{user}", "user")
    messages = body.get("messages")
    if isinstance(messages, list):
        digest = opening_digest([m for m in messages if isinstance(m, Mapping)])
        if digest is not None:
            return ConversationKey(f"o:{digest}", "opening")
    return ConversationKey(None, "none")
