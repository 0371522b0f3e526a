"""Request validation: JSON shape, body size, message count and the max_tokens cap (pure).

Every failure is a `GatewayError` subclass that the server turns into OpenAI's error format, never a 5xx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from dialogue_runtime.gateway.errors import BadRequest, PayloadTooLarge
from dialogue_runtime.gateway.history import content_text, estimate_tokens

Endpoint = Literal["chat", "completions"]


@dataclass(frozen=True)
class Limits:
    """Per-request limits; a model may override them (see `ModelInfo.limits`)."""

    max_body_bytes: int = 1 << 20
    max_messages: int = 256
    max_tokens_cap: int = 4096


def check_body_size(size_bytes: int, limits: Limits) -> None:
    """Refuse a body over the byte limit (413)."""
    if size_bytes > limits.max_body_bytes:
        raise PayloadTooLarge(
            f"Request body is {size_bytes} bytes; the limit is {limits.max_body_bytes} bytes.", code="body_too_large"
        )


# Deeper than any OpenAI request (a tool's JSON schema included); the parser and every walk of the body after it
# stay far from Python's recursion limit.
MAX_JSON_DEPTH = 64


def _check_tree(body: Any) -> None:
    """400 for nesting deeper than MAX_JSON_DEPTH or a string that is not Unicode text (a lone UTF-16 surrogate
    such as "\\ud800", which JSON admits and no UTF-8 encoder does: forwarding it failed with a 500)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise BadRequest(
                        f"Request body holds a string that is not valid Unicode ({exc.reason}).", code="invalid_json"
                    ) from exc
            continue
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"Request body is nested deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json")
        if isinstance(value, dict):
            stack.extend((key, depth) for key in value)
        stack.extend((child, depth + 1) for child in children)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse the body as a JSON object of sane depth and valid Unicode (400 otherwise)."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"Malformed JSON in request body: {exc}", code="invalid_json") from exc
    except RecursionError as exc:  # the C parser gives up past ~1,000 levels
        raise BadRequest(f"Request body is nested deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.", code="invalid_json")
    _check_tree(body)
    return body


def requested_max_tokens(body: dict[str, Any]) -> int | None:
    """The completion-length limit the client asked for (`max_completion_tokens` wins over `max_tokens`)."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{name}' must be a positive integer.", param=name, code="invalid_value")
        return value
    return None


def validate_request(body: dict[str, Any], kind: Endpoint, limits: Limits) -> str:
    """Check an OpenAI request body against the schema basics and the limits; returns the `model` field."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string.", param="model", code="missing_model")
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array.", param="messages", code="invalid_messages")
        if len(messages) > limits.max_messages:
            raise BadRequest(
                f"Too many messages: {len(messages)}; the limit is {limits.max_messages}.",
                param="messages",
                code="too_many_messages",
            )
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest(
                    f"messages[{index}] must be an object with a string 'role'.",
                    param=f"messages[{index}]",
                    code="invalid_messages",
                )
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str | list) or not prompt:
            raise BadRequest("'prompt' is required.", param="prompt", code="missing_prompt")
    max_tokens = requested_max_tokens(body)
    if max_tokens is not None and max_tokens > limits.max_tokens_cap:
        raise BadRequest(
            f"max_tokens {max_tokens} is over this model's cap of {limits.max_tokens_cap}.",
            param="max_tokens",
            code="max_tokens_over_cap",
        )
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest("'stream' must be a boolean.", param="stream", code="invalid_value")
    return model


def prompt_token_estimate(body: dict[str, Any]) -> int:
    """A cheap estimate of the prompt's tokens for rate limiting (the fallback estimator)."""
    if isinstance(body.get("messages"), list):
        return sum(estimate_tokens(content_text(m.get("content"))) + 4 for m in body["messages"] if isinstance(m, dict))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return estimate_tokens(prompt)
    if isinstance(prompt, list):
        return sum(estimate_tokens(p) if isinstance(p, str) else 1 for p in prompt)
    return 0
