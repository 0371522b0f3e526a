"""API keys and per-key rate limits (pure; the clock is injected).

Keys are compared with `hmac.compare_digest` and never stored in logs or metric labels: a key is identified by
`key_id`, a short hash. Limits are token buckets refilled continuously: `requests_per_minute` and
`tokens_per_minute` (prompt estimate + max_tokens are charged when a request is admitted).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from dialogue_runtime.gateway.errors import RateLimited, Unauthorized

Clock = Callable[[], float]
ANONYMOUS = "anonymous"


def key_id(api_key: str) -> str:
    """A non-reversible short identifier of a key, safe for logs and limiter state."""
    return hashlib.blake2b(api_key.encode(), digest_size=6, person=b"dlg-key").hexdigest()


def bearer_token(authorization: str | None, x_api_key: str | None = None) -> str | None:
    """The key from `Authorization: Bearer <key>` (or an `api-key`/`x-api-key` header), or None."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return x_api_key or None


def parse_secret_keys(value: str) -> frozenset[str]:
    """Keys held in one Secret value: one per line or comma-separated, blanks ignored."""
    parts = value.replace(",", "\n").splitlines()
    return frozenset(p.strip() for p in parts if p.strip())


def key_matches(presented: str, allowed: Iterable[str]) -> bool:
    """Constant-time membership: every allowed key is compared, so timing reveals nothing about which."""
    presented_bytes = presented.encode()
    found = False
    for candidate in allowed:
        found |= hmac.compare_digest(presented_bytes, candidate.encode())
    return found


def session_owner(presented: str | None, identity: str) -> str:
    """Who owns a session: the key's id, also on an open model, where a token the client sends is its own secret
    handle on its sessions (it limits nothing there, see `authorize`)."""
    return key_id(presented) if presented is not None else identity


def authorize(presented: str | None, allowed: frozenset[str]) -> str:
    """Check a request against a model's keys; returns the limiter identity or raises Unauthorized.

    A model with no keys is open; its callers share the limiter identity "anonymous", whatever token they send:
    an unchecked token is no identity, and charging each to its own bucket let any client pass the limit by
    inventing a fresh token per request (and grew the limiter by one bucket per invented token).
    """
    if not allowed:
        return ANONYMOUS
    if presented is None:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key")
    if not key_matches(presented, allowed):
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    return key_id(presented)


@dataclass
class TokenBucket:
    """A bucket of `capacity` that refills at `capacity` per 60 s."""

    capacity: float
    level: float
    updated_s: float

    def refill(self, now_s: float) -> None:
        elapsed = max(0.0, now_s - self.updated_s)
        self.level = min(self.capacity, self.level + elapsed * self.capacity / 60.0)
        self.updated_s = now_s

    def seconds_until(self, amount: float) -> float:
        """Seconds until `amount` is available (the level may never reach it if amount > capacity)."""
        missing = min(amount, self.capacity) - self.level
        return max(0.0, missing * 60.0 / self.capacity)


@dataclass
class RateLimiter:
    """Per-identity request and token buckets; 0 disables a limit."""

    requests_per_minute: int
    tokens_per_minute: int
    clock: Clock
    _requests: dict[str, TokenBucket] = field(default_factory=dict)
    _tokens: dict[str, TokenBucket] = field(default_factory=dict)

    def _bucket(self, table: dict[str, TokenBucket], identity: str, capacity: int, now_s: float) -> TokenBucket:
        bucket = table.get(identity)
        if bucket is None:
            bucket = table[identity] = TokenBucket(float(capacity), float(capacity), now_s)
        bucket.refill(now_s)
        return bucket

    def admit(self, identity: str, tokens: int) -> None:
        """Charge one request and `tokens` tokens to `identity`, or raise RateLimited with a Retry-After."""
        now_s = self.clock()
        buckets: list[tuple[TokenBucket, float, str]] = []
        if self.requests_per_minute > 0:
            buckets.append((self._bucket(self._requests, identity, self.requests_per_minute, now_s), 1.0, "requests"))
        if self.tokens_per_minute > 0:
            # A request larger than the whole bucket may pass when the bucket is full, never more often.
            amount = float(min(tokens, self.tokens_per_minute))
            buckets.append((self._bucket(self._tokens, identity, self.tokens_per_minute, now_s), amount, "tokens"))
        for bucket, amount, what in buckets:
            if bucket.level < amount:
                wait_s = bucket.seconds_until(amount)
                raise RateLimited(
                    f"Rate limit reached for {what} per minute; retry in {wait_s:.1f} s.",
                    code=f"rate_limit_{what}",
                    retry_after_s=max(1, int(wait_s + 0.999)),
                )
        for bucket, amount, _ in buckets:
            bucket.level -= amount

    def forget(self, identities: Mapping[str, object] | None = None) -> None:
        """Drop all limiter state (or that of the given identities), e.g. when keys rotate."""
        if identities is None:
            self._requests.clear()
            self._tokens.clear()
            return
        for identity in identities:
            self._requests.pop(identity, None)
            self._tokens.pop(identity, None)
