"""The gateway's error hierarchy and OpenAI's error body format (pure).

GatewayError                      -> an OpenAI error body with an HTTP status
  +-- BadRequest (400)            malformed JSON, invalid field, too many messages, max_tokens over cap
  +-- Unauthorized (401)          missing or wrong API key
  +-- NotFound (404)              unknown model or session
  +-- PayloadTooLarge (413)       body over the byte limit
  +-- RateLimited (429)           key over its requests/minute or tokens/minute
  +-- Unavailable (503)           no endpoint became Ready in time, queue full (carries Retry-After)
  +-- UpstreamFailed (502)        every tried endpoint failed before any byte reached the client
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error answered to the client in OpenAI's format; `cause` labels the error metric."""

    status: int = 500
    error_type: str = "server_error"
    cause: str = "internal"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        cause: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if cause is not None:
            self.cause = cause
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI clients expect: {"error": {"message", "type", "param", "code"}}."""
        return openai_error_body(self.message, self.error_type, param=self.param, code=self.code)

    def headers(self) -> dict[str, str]:
        """Extra response headers (Retry-After for 429 and 503)."""
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}


class BadRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"
    cause = "bad_request"


class Unauthorized(GatewayError):
    status = 401
    error_type = "authentication_error"
    cause = "unauthorized"


class NotFound(GatewayError):
    status = 404
    error_type = "invalid_request_error"
    cause = "not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    error_type = "invalid_request_error"
    cause = "body_too_large"


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_error"
    cause = "rate_limited"


class Unavailable(GatewayError):
    status = 503
    error_type = "server_error"
    cause = "unavailable"


class UpstreamFailed(GatewayError):
    status = 502
    error_type = "server_error"
    cause = "upstream"


def openai_error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Build OpenAI's error object."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
