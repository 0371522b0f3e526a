"""The simulated engine's HTTP server (aiohttp): vLLM's OpenAI API, `/health` and `/metrics` over the queueing model.

Requests become `SimRequest`s (token counts and prefix blocks from `sim.tokens`); one driver task moves the
`EngineModel` along the event loop's clock, waking at the model's next event, and every `tick_s` while a
client streams, and hands each request its events. Everything a client sees is deterministic except timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from dialogue_runtime.engine.config import SimProfile
from dialogue_runtime.sim import tokens as tok
from dialogue_runtime.sim.metrics import SimMetrics
from dialogue_runtime.sim.model import EngineModel, SimEvent, SimRequest

DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's and vLLM's default for /v1/completions


class ApiError(Exception):
    """An OpenAI-shaped error response."""

    def __init__(self, status: int, message: str, err_type: str = "BadRequestError", param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": self.err_type, "param": self.param, "code": self.status}}
        return web.json_response(body, status=self.status)


@dataclass(frozen=True)
class Generation:
    """A parsed generation request: what to simulate and how to answer."""

    request_id: str
    prompt_tokens: list[str]
    output_tokens: int
    max_tokens: int
    finish_reason: str
    seed: int
    stream: bool
    include_usage: bool


class SimEngine:
    """One simulated engine: the model, its clock, its metrics, and the requests waiting on its events."""

    def __init__(
        self,
        profile: SimProfile,
        served_model_name: str,
        max_model_len: int = 2048,
        tick_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.served_model_name = served_model_name
        self.max_model_len = max_model_len
        self.tick_s = tick_s
        self._clock = clock
        self._t0 = clock()
        self.model = EngineModel(profile)
        self.metrics = SimMetrics(served_model_name, max_model_len)
        self._queues: dict[str, asyncio.Queue[SimEvent]] = {}
        self._streaming = 0  # requests in flight whose client wants tokens as they come
        self._wake = asyncio.Event()
        self.created = int(time.time())

    def now_s(self) -> float:
        return self._clock() - self._t0

    @property
    def ready(self) -> bool:
        return self.now_s() >= self.profile.startup_s

    def _dispatch(self, events: list[SimEvent]) -> None:
        for event in events:
            self.metrics.observe(event)
            queue = self._queues.get(event.request_id)
            if queue is not None:
                queue.put_nowait(event)

    def sync(self) -> None:
        """Bring the model to now (before a scrape, so gauges like KV usage are current)."""
        self._dispatch(self.model.advance(self.now_s()))

    async def drive(self) -> None:
        """Run forever: advance the model, deliver events, sleep until the next event or tick."""
        while True:
            now = self.now_s()
            self._dispatch(self.model.advance(now))
            next_s = self.model.next_event_s()
            self._wake.clear()
            timeout = None if next_s is None else max(0.0, next_s - now)
            if timeout is not None and self._streaming:
                timeout = min(timeout, self.tick_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def generate(self, gen: Generation) -> AsyncIterator[SimEvent]:
        """Submit a request and yield its events until it finishes or is rejected; cancelling aborts it."""
        queue: asyncio.Queue[SimEvent] = asyncio.Queue()
        self._queues[gen.request_id] = queue
        self._streaming += gen.stream
        self.metrics.start(gen.request_id, len(gen.prompt_tokens), gen.max_tokens, gen.finish_reason)
        blocks = tok.prefix_block_hashes(gen.prompt_tokens, self.profile.block_size_tokens)
        request = SimRequest(gen.request_id, len(gen.prompt_tokens), gen.output_tokens, blocks)
        done = False
        try:
            self.model.submit(request, self.now_s())
            self._wake.set()
            while True:
                event = await queue.get()
                yield event
                if event.kind in ("finished", "rejected"):
                    done = True
                    return
        finally:
            self._queues.pop(gen.request_id, None)
            self._streaming -= gen.stream
            if not done:
                self.model.cancel(gen.request_id, self.now_s())
                self.metrics.abort(gen.request_id)
                self._wake.set()

    # --- request parsing ----------------------------------------------------------------------------

    def parse(self, body: dict[str, Any], chat: bool) -> Generation:
        model = body.get("model")
        if model is not None and model != self.served_model_name:
            raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise ApiError(400, "`messages` must be a non-empty list", param="messages")
            prompt = tok.render_chat(messages)
            prompt_tokens = tok.tokenize(prompt)
        else:
            prompt_tokens = self._completion_prompt(body.get("prompt"))
            prompt = " ".join(prompt_tokens)
        seed = tok.prompt_seed(prompt)
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        if requested is not None and (not isinstance(requested, int) or requested < 1):
            raise ApiError(400, f"max_tokens must be at least 1, got {requested}", param="max_tokens")
        if not chat:
            output = requested or DEFAULT_COMPLETION_MAX_TOKENS
            finish = "length"
        else:
            natural = tok.natural_length(seed)
            if requested is not None and (requested <= natural or body.get("ignore_eos")):
                output, finish = requested, "length"
            else:
                output, finish = natural, "stop"
        max_tokens = requested if requested is not None else self.max_model_len - len(prompt_tokens)
        total = len(prompt_tokens) + output
        if total > self.max_model_len:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{total} tokens ({len(prompt_tokens)} in the messages, {output} in the completion). "
                "Please reduce the length of the messages or completion.",
                param="max_tokens",
            )
        options = body.get("stream_options") or {}
        return Generation(
            request_id=f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            prompt_tokens=prompt_tokens,
            output_tokens=output,
            max_tokens=max(1, max_tokens),
            finish_reason=finish,
            seed=seed,
            stream=bool(body.get("stream")),
            include_usage=bool(options.get("include_usage")) if isinstance(options, dict) else False,
        )

    @staticmethod
    def _completion_prompt(prompt: Any) -> list[str]:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            tokens = tok.tokenize(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            tokens = [str(t) for t in prompt]
        else:
            raise ApiError(400, "`prompt` must be a string or a list of token ids", param="prompt")
        if not tokens:
            raise ApiError(400, "`prompt` has no tokens", param="prompt")
        return tokens


def _usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _stream_choice(chat: bool, piece: str | None, finish: str | None) -> dict[str, Any]:
    if chat:
        delta = {} if piece is None else {"content": piece}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, "stop_reason": None}
    return {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish, "stop_reason": None}


def _final_choice(chat: bool, text: str, finish: str) -> dict[str, Any]:
    if chat:
        message = {"role": "assistant", "content": text, "tool_calls": []}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish, "stop_reason": None}
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}


def _rejection(reason: str | None) -> ApiError:
    if (reason or "").startswith("queue full"):
        return ApiError(503, f"request rejected: {reason}", "ServiceUnavailableError")
    return ApiError(400, f"request rejected: {reason}")


async def _complete(engine: SimEngine, request: web.Request, chat: bool) -> web.StreamResponse:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        return ApiError(400, f"request body is not JSON: {exc}").response()
    if not isinstance(body, dict):
        return ApiError(400, "request body must be a JSON object").response()
    try:
        gen = engine.parse(body, chat)
    except ApiError as exc:
        return exc.response()
    obj = ("chat.completion" if chat else "text_completion") + (".chunk" if chat and gen.stream else "")
    head: dict[str, Any] = {"id": gen.request_id, "object": obj, "created": int(time.time()),
                            "model": engine.served_model_name}  # fmt: skip
    pieces: list[str] = []
    cached = 0
    stream: web.StreamResponse | None = None
    async for event in engine.generate(gen):
        if event.kind == "rejected":
            err = _rejection(event.reason)
            if stream is None:
                return err.response()
            await stream.write(_sse({"error": {"message": err.message, "type": err.err_type, "code": err.status}}))
            await stream.write_eof()
            return stream
        if event.kind == "admitted":
            cached = event.cached_tokens
        if event.kind not in ("first_token", "token"):
            continue
        new = [tok.output_token(gen.seed, len(pieces) + i) for i in range(event.tokens)]
        pieces.extend(new)
        if not gen.stream:
            continue
        if stream is None:
            stream = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await stream.prepare(request)
            if chat:
                role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                        "finish_reason": None}  # fmt: skip
                await stream.write(_sse({**head, "choices": [role]}))
        for piece in new:
            await stream.write(_sse({**head, "choices": [_stream_choice(chat, piece, None)]}))
    usage = _usage(len(gen.prompt_tokens), len(pieces), cached)
    if stream is None:
        return web.json_response(
            {**head, "choices": [_final_choice(chat, "".join(pieces), gen.finish_reason)], "usage": usage}
        )
    await stream.write(_sse({**head, "choices": [_stream_choice(chat, None, gen.finish_reason)]}))
    if gen.include_usage:
        await stream.write(_sse({**head, "choices": [], "usage": usage}))
    await stream.write(_sse("[DONE]"))
    await stream.write_eof()
    return stream


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(engine: SimEngine, api_key: str | None = None) -> web.Application:
    """The aiohttp application serving `engine`; `api_key` guards `/v1/*` only, as vLLM's `--api-key` does."""

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        guarded = request.path.startswith("/v1")
        if (guarded or request.path == "/health") and not engine.ready:
            return web.json_response({"error": "engine is starting"}, status=503)
        if guarded and api_key and request.headers.get("Authorization") != f"Bearer {api_key}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def metrics(_: web.Request) -> web.Response:
        engine.sync()
        body = engine.metrics.render(engine.model)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def models(_: web.Request) -> web.Response:
        card = {"id": engine.served_model_name, "object": "model", "created": engine.created, "owned_by": "vllm",
                "root": engine.served_model_name, "parent": None, "max_model_len": engine.max_model_len}  # fmt: skip
        return web.json_response({"object": "list", "data": [card]})

    async def chat(request: web.Request) -> web.StreamResponse:
        return await _complete(engine, request, chat=True)

    async def completions(request: web.Request) -> web.StreamResponse:
        return await _complete(engine, request, chat=False)

    async def driver(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(engine.drive())
        yield
        task.cancel()

    app = web.Application(middlewares=[gate])
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.cleanup_ctx.append(driver)
    return app
