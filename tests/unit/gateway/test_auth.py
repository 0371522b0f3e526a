"""API keys and per-key token buckets."""

import pytest
from dialogue_runtime.gateway.auth import (
    RateLimiter,
    authorize,
    bearer_token,
    key_id,
    key_matches,
    parse_secret_keys,
)
from dialogue_runtime.gateway.errors import RateLimited, Unauthorized


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer sk-1") == "sk-1"
    assert bearer_token("bearer  sk-1 ") == "sk-1"
    assert bearer_token("Basic abc") is None
    assert bearer_token(None, "sk-2") == "sk-2"


def test_secret_value_may_hold_several_keys() -> None:
    assert parse_secret_keys("a\nb, c\n\n") == frozenset({"a", "b", "c"})


def test_authorize_open_model_missing_and_wrong_key() -> None:
    assert authorize(None, frozenset()) == "anonymous"
    assert authorize("sk-invented", frozenset()) == "anonymous"  # an unchecked token is no identity
    with pytest.raises(Unauthorized, match="Missing API key"):
        authorize(None, frozenset({"sk-good"}))
    with pytest.raises(Unauthorized) as wrong:
        authorize("sk-bad", frozenset({"sk-good"}))
    assert "sk-bad" not in wrong.value.message and "sk-good" not in wrong.value.message
    assert authorize("sk-good", frozenset({"sk-good", "sk-other"})) == key_id("sk-good")
    assert key_matches("x", []) is False


def test_key_id_does_not_reveal_the_key() -> None:
    assert "sk-secret" not in key_id("sk-secret")
    assert key_id("sk-a") != key_id("sk-b")


def test_requests_per_minute_bucket_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=3, tokens_per_minute=0, clock=clock)
    for _ in range(3):
        limiter.admit("k", 10)
    with pytest.raises(RateLimited) as over:
        limiter.admit("k", 10)
    assert over.value.status == 429 and over.value.retry_after_s == 20
    limiter.admit("other", 10)  # limits are per key
    clock.now_s += 20
    limiter.admit("k", 10)


def test_tokens_per_minute_and_oversized_request() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=0, tokens_per_minute=1000, clock=clock)
    limiter.admit("k", 600)
    with pytest.raises(RateLimited, match="tokens per minute"):
        limiter.admit("k", 600)
    clock.now_s += 60
    limiter.admit("k", 5000)  # larger than the bucket: passes when full, never twice in a row
    with pytest.raises(RateLimited):
        limiter.admit("k", 1)
    limiter.forget()
    limiter.admit("k", 1)
