"""The aiohttp application: OpenAI endpoints, /v1/models, /healthz, /metrics and the error middleware (I/O layer).

Admission order for an OpenAI request: body size (413) -> JSON (400) -> model (404) -> API key (401) -> limits
(400) -> per-key rate (429) -> routing, holding at zero (503) -> upstream (502 only if every attempt failed
before the client saw a byte). Every refusal is answered in OpenAI's error format.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dialogue_runtime.gateway.auth import RateLimiter, authorize, bearer_token, session_owner
from dialogue_runtime.gateway.conversation_key import conversation_key
from dialogue_runtime.gateway.errors import BadRequest, GatewayError, NotFound, Unavailable, openai_error_body
from dialogue_runtime.gateway.history import TokenCounter, estimate_tokens
from dialogue_runtime.gateway.metrics import GatewayMetrics
from dialogue_runtime.gateway.proxy import ChunkTap, Forward, Outcome, Proxy
from dialogue_runtime.gateway.registry import Registry
from dialogue_runtime.gateway.resources import ModelInfo
from dialogue_runtime.gateway.settings import GatewaySettings
from dialogue_runtime.gateway.validation import (
    Endpoint,
    check_body_size,
    parse_json_object,
    prompt_token_estimate,
    requested_max_tokens,
    validate_request,
)

log = logging.getLogger(__name__)

DRAIN_CAP_BYTES = 16 << 20  # read (and drop) at most this much of an oversized body before answering 413
DEFAULT_COMPLETION_TOKENS = 256  # charged to tokens/minute when a request sets no max_tokens


@dataclass(frozen=True)
class Admitted:
    """A request that passed admission."""

    model: ModelInfo
    adapter: str | None
    identity: str  # the rate limiter's bucket
    presented_key: str | None
    owner: str  # owner of the sessions it creates or may read


class Gateway:
    """Everything a request handler needs, built once at start-up."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        registry: Registry,
        metrics: GatewayMetrics,
        proxy: Proxy,
        limiter: RateLimiter,
        counters: dict[str, TokenCounter] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.proxy = proxy
        self.limiter = limiter
        self.counters = counters or {}
        self.ready = False

    def token_counter(self, model: ModelInfo) -> TokenCounter:
        """The model's tokenizer-backed counter if configured, else the fallback estimator."""
        return self.counters.get(model.served_name) or self.counters.get(model.name) or estimate_tokens

    # --- admission ---------------------------------------------------------------------------------

    async def read_body(self, request: web.Request) -> dict[str, Any]:
        limit = self.settings.limits.max_body_bytes
        if request.content_length is not None and request.content_length > DRAIN_CAP_BYTES:
            check_body_size(request.content_length, self.settings.limits)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 << 10):
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            elif size > DRAIN_CAP_BYTES:
                break
        check_body_size(size, self.settings.limits)
        return parse_json_object(b"".join(chunks))

    def admit_model(self, request: web.Request, requested: str) -> Admitted:
        """Resolve the model and check the API key."""
        resolved = self.registry.resolve(requested)
        if resolved is None:
            raise NotFound(f"The model {requested!r} does not exist.", param="model", code="model_not_found")
        model, adapter = resolved
        request["dialogue_model"] = model
        if model.keys_problem is not None:  # not a 401: no key the client could send would be accepted
            why = f"The model {requested!r} accepts no request: {model.keys_problem}."
            raise Unavailable(why, code="api_key_secret_missing")
        presented = bearer_token(
            request.headers.get("Authorization"), request.headers.get("api-key") or request.headers.get("x-api-key")
        )
        identity = authorize(presented, model.api_keys)
        return Admitted(
            model, adapter, identity, presented if model.api_keys else None, session_owner(presented, identity)
        )

    def charge(self, admitted: Admitted, body: dict[str, Any]) -> None:
        """Charge the per-key limits: one request, prompt estimate + max_tokens tokens."""
        tokens = prompt_token_estimate(body) + (requested_max_tokens(body) or DEFAULT_COMPLETION_TOKENS)
        self.limiter.admit(admitted.identity, tokens)

    def prepare_body(self, admitted: Admitted, body: dict[str, Any], kind: Endpoint) -> dict[str, Any]:
        """The body sent upstream: the engine's served name (or adapter), the model's system prompt if none."""
        upstream = dict(body)
        upstream["model"] = admitted.adapter or admitted.model.served_name
        prompt = admitted.model.system_prompt
        if kind == "chat" and prompt and not any(m.get("role") == "system" for m in body["messages"]):
            upstream["messages"] = [{"role": "system", "content": prompt}, *body["messages"]]
        if upstream.get("stream") and kind == "chat":
            options = dict(upstream.get("stream_options") or {})
            options.setdefault("include_usage", True)
            upstream["stream_options"] = options
        return upstream

    async def forward(
        self,
        request: web.Request,
        admitted: Admitted,
        *,
        path: str,
        body: dict[str, Any],
        key: str | None,
        started_s: float,
        tap: ChunkTap | None = None,
    ) -> tuple[web.StreamResponse, Outcome]:
        fwd = Forward(admitted.model, admitted.adapter, key, path, body, started_s, admitted.presented_key)
        response, outcome = await self.proxy.forward(request, fwd, tap)
        model = admitted.model
        self.metrics.requests.labels(model.namespace, model.name, outcome.variant, str(outcome.status)).inc()
        self.metrics.duration.labels(model.namespace, model.name, outcome.variant).observe(time.monotonic() - started_s)
        return response, outcome

    # --- handlers ----------------------------------------------------------------------------------

    async def openai(self, request: web.Request, kind: Endpoint, path: str) -> web.StreamResponse:
        started_s = time.monotonic()
        body = await self.read_body(request)
        requested = body.get("model")
        if not isinstance(requested, str) or not requested:
            raise BadRequest("'model' is required and must be a string.", param="model", code="missing_model")
        admitted = self.admit_model(request, requested)
        validate_request(body, kind, admitted.model.limits)
        self.charge(admitted, body)
        if self.settings.log_content:
            log.info("request to %s: %s", admitted.model.ref, body)
        key = conversation_key(request.headers, body).scoped(admitted.adapter)
        upstream = self.prepare_body(admitted, body, kind)
        response, _ = await self.forward(request, admitted, path=path, body=upstream, key=key, started_s=started_s)
        return response

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self.openai(request, "chat", "/v1/chat/completions")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self.openai(request, "completions", "/v1/completions")

    async def list_models(self, request: web.Request) -> web.Response:
        """Models this caller's key may use (models without keys are open to all)."""
        presented = bearer_token(request.headers.get("Authorization"), request.headers.get("x-api-key"))
        data = []
        for ref in sorted(self.registry.models):
            model = self.registry.models[ref]
            if model.api_keys:
                try:
                    authorize(presented, model.api_keys)
                except GatewayError:
                    continue
            # A model whose served name an older one holds is listed by its adapters only (it still answers to
            # its DialogueModel name and namespace/name).
            served = [model.served_name] if self.registry.holds_served_name(model) else []
            for name in [*served, *sorted(model.adapters)]:
                data.append(
                    {
                        "id": name,
                        "object": "model",
                        "created": 0,
                        "owned_by": model.namespace or "dialogue-gateway",
                        "root": model.served_name,
                        "ready": self.registry.has_endpoints(model.ref),
                    }
                )
        return web.json_response({"object": "list", "data": data})

    async def healthz(self, _request: web.Request) -> web.Response:
        if not self.ready:
            return web.json_response({"status": "starting"}, status=503)
        return web.json_response({"status": "ok", "models": len(self.registry.models)})

    async def metrics_handler(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": "text/plain; version=0.0.4"})


def error_middleware(gateway: Gateway) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as exc:
            model: ModelInfo | None = request.get("dialogue_model")
            namespace, name = (model.namespace, model.name) if model else ("", "")
            gateway.metrics.errors.labels(namespace, name, exc.cause).inc()
            gateway.metrics.requests.labels(namespace, name, "", str(exc.status)).inc()
            return web.json_response(exc.body(), status=exc.status, headers=exc.headers())
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            body = openai_error_body(exc.reason, "invalid_request_error", code=f"http_{exc.status}")
            return web.json_response(body, status=exc.status)
        except (ConnectionResetError, asyncio.CancelledError):
            raise  # the client went away: nothing to answer
        except Exception:
            # A bug, not a client error: logged with its traceback (never the body), answered in OpenAI's format.
            log.exception("internal error serving %s %s", request.method, request.path)
            gateway.metrics.errors.labels("", "", "internal").inc()
            body = openai_error_body("Internal error in the gateway.", "server_error", code="internal_error")
            return web.json_response(body, status=500)

    return middleware


def build_app(gateway: Gateway, extra_routes: Callable[[web.Application], None] | None = None) -> web.Application:
    """The aiohttp application; `extra_routes` adds the sessions API."""
    # Bodies are read in chunks with our own limit (413 in OpenAI's format), not aiohttp's.
    app = web.Application(middlewares=[error_middleware(gateway)], client_max_size=DRAIN_CAP_BYTES)
    app.router.add_post("/v1/chat/completions", gateway.chat_completions)
    app.router.add_post("/v1/completions", gateway.completions)
    app.router.add_get("/v1/models", gateway.list_models)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/metrics", gateway.metrics_handler)
    if extra_routes is not None:
        extra_routes(app)
    return app
