"""Request validation and OpenAI error bodies."""

import pytest
from dialogue_runtime.gateway.errors import BadRequest, PayloadTooLarge, Unavailable
from dialogue_runtime.gateway.validation import (
    Limits,
    check_body_size,
    parse_json_object,
    prompt_token_estimate,
    validate_request,
)

LIMITS = Limits(max_body_bytes=100, max_messages=2, max_tokens_cap=50)
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_malformed_json_and_non_object() -> None:
    with pytest.raises(BadRequest, match="Malformed JSON") as bad:
        parse_json_object(b"{not json")
    assert bad.value.body()["error"]["type"] == "invalid_request_error"
    with pytest.raises(BadRequest, match="JSON object"):
        parse_json_object(b"[1]")
    with pytest.raises(BadRequest):
        parse_json_object(b"\xff\xfe")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}',  # a lone surrogate: valid JSON, not Unicode
        b'{"\\udc00": 1}',
        b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # past the C parser's recursion limit
        b'{"x": ' + b"[" * 64 + b"]" * 64 + b"}",  # parsed, but deeper than MAX_JSON_DEPTH
        b'{"x": ' + b'{"a": ' * 64 + b"1" + b"}" * 64 + b"}",
    ],
)
def test_bodies_no_encoder_or_walk_survives_are_400(raw: bytes) -> None:
    with pytest.raises(BadRequest) as bad:
        parse_json_object(raw)
    assert bad.value.body()["error"]["code"] == "invalid_json"


def test_deep_enough_bodies_and_surrogate_pairs_pass() -> None:
    assert parse_json_object(b'{"x": ' + b"[" * 62 + b"]" * 62 + b"}")
    assert parse_json_object('{"m": "caf\u00e9 \\ud83d\\ude00"}'.encode())["m"] == "caf\u00e9 \U0001f600"


def test_body_size() -> None:
    check_body_size(100, LIMITS)
    with pytest.raises(PayloadTooLarge) as big:
        check_body_size(101, LIMITS)
    assert big.value.status == 413


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"messages": CHAT["messages"]}, "missing_model"),
        ({"model": "m", "messages": []}, "invalid_messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "a"}] * 3}, "too_many_messages"),
        ({"model": "m", "messages": ["hi"]}, "invalid_messages"),
        ({**CHAT, "max_tokens": 51}, "max_tokens_over_cap"),
        ({**CHAT, "max_completion_tokens": 0}, "invalid_value"),
        ({**CHAT, "max_tokens": "5"}, "invalid_value"),
        ({**CHAT, "stream": "yes"}, "invalid_value"),
    ],
)
def test_chat_rejections(body: dict[str, object], code: str) -> None:
    with pytest.raises(BadRequest) as error:
        validate_request(body, "chat", LIMITS)
    assert error.value.code == code
    assert set(error.value.body()["error"]) == {"message", "type", "param", "code"}


def test_valid_requests() -> None:
    assert validate_request({**CHAT, "max_tokens": 50, "stream": True}, "chat", LIMITS) == "m"
    assert validate_request({"model": "m", "prompt": "Once"}, "completions", LIMITS) == "m"
    with pytest.raises(BadRequest, match="prompt"):
        validate_request({"model": "m"}, "completions", LIMITS)


def test_prompt_token_estimate_and_retry_after_header() -> None:
    assert prompt_token_estimate({"prompt": "abcdefgh"}) == 2
    assert prompt_token_estimate(CHAT) == 5
    assert Unavailable("x", retry_after_s=3).headers() == {"Retry-After": "3"}
