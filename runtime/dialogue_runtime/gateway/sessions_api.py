"""The conversation-memory API `/v1/dialogue/sessions` on top of the session stores (I/O layer).

    POST   /v1/dialogue/sessions                {model, system?}            -> 201 the session
    POST   /v1/dialogue/sessions/{id}/messages  {content, stream?, ...}    -> the reply (SSE chunks when stream)
    GET    /v1/dialogue/sessions/{id}                                       -> the kept history
    DELETE /v1/dialogue/sessions/{id}                                       -> {deleted: true}

Messages of one session are serialized by the store's lock; the history kept is trimmed to the model's
`historyTokenBudget` (system prompt always kept, oldest turns dropped first). A session belongs to the key that
created it; another key gets 404. Routing uses the session id as the conversation key.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from dialogue_runtime.gateway.errors import BadRequest, NotFound
from dialogue_runtime.gateway.history import history_tokens, trim_history
from dialogue_runtime.gateway.resources import ModelInfo
from dialogue_runtime.gateway.server import Admitted, Gateway
from dialogue_runtime.gateway.sessions import Session, SessionStore, new_session_id
from dialogue_runtime.gateway.validation import requested_max_tokens

PASSED_OPTIONS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop")


class SseText:
    """Accumulates the assistant text from streamed chat-completion chunks."""

    def __init__(self) -> None:
        self._buffer = b""
        self.parts: list[str] = []
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            try:
                event = json.loads(data)
            except json.JSONDecodeError:
                continue
            if event.get("usage"):
                self.usage = event["usage"]
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if isinstance(piece, str):
                    self.parts.append(piece)

    @property
    def text(self) -> str:
        return "".join(self.parts)


class SessionsApi:
    """Handlers of the sessions API."""

    def __init__(self, gateway: Gateway, store: SessionStore) -> None:
        self.gateway = gateway
        self.store = store

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/dialogue/sessions", self.create)
        app.router.add_post("/v1/dialogue/sessions/{id}/messages", self.message)
        app.router.add_get("/v1/dialogue/sessions/{id}", self.read)
        app.router.add_delete("/v1/dialogue/sessions/{id}", self.delete)

    def _view(self, session: Session, model: ModelInfo | None) -> dict[str, Any]:
        counter = self.gateway.token_counter(model) if model else None
        return {
            "id": session.id,
            "object": "dialogue.session",
            "model": model.served_name if model else session.model,
            "system": session.system,
            "messages": session.messages,
            "history_tokens": history_tokens(session.prompt_messages(), counter) if counter else None,
            "history_token_budget": model.history_token_budget if model else None,
            "created_at": int(session.created_s),
            "updated_at": int(session.updated_s),
        }

    async def _owned(self, request: web.Request) -> tuple[Session, Admitted]:
        session_id = request.match_info["id"]
        session = await self.store.get(session_id)
        if session is None:
            raise NotFound(f"Session {session_id!r} does not exist or has expired.", code="session_not_found")
        model = self.gateway.registry.models.get(session.model)
        if model is None:
            raise NotFound(f"The model of session {session_id!r} no longer exists.", code="model_not_found")
        admitted = self.gateway.admit_model(request, model.ref)
        if admitted.owner != session.owner:
            raise NotFound(f"Session {session_id!r} does not exist or has expired.", code="session_not_found")
        return session, admitted

    async def create(self, request: web.Request) -> web.Response:
        body = await self.gateway.read_body(request)
        requested = body.get("model")
        if not isinstance(requested, str) or not requested:
            raise BadRequest("'model' is required and must be a string.", param="model", code="missing_model")
        system = body.get("system")
        if system is not None and not isinstance(system, str):
            raise BadRequest("'system' must be a string.", param="system", code="invalid_value")
        admitted = self.gateway.admit_model(request, requested)
        now = time.time()
        session = Session(
            id=new_session_id(),
            model=admitted.model.ref,
            owner=admitted.owner,
            system=system if system is not None else admitted.model.system_prompt,
            created_s=now,
            updated_s=now,
        )
        await self.store.save(session)
        return web.json_response(self._view(session, admitted.model), status=201)

    async def read(self, request: web.Request) -> web.Response:
        session, admitted = await self._owned(request)
        return web.json_response(self._view(session, admitted.model))

    async def delete(self, request: web.Request) -> web.Response:
        session, _ = await self._owned(request)
        await self.store.delete(session.id)
        return web.json_response({"id": session.id, "object": "dialogue.session.deleted", "deleted": True})

    async def message(self, request: web.Request) -> web.StreamResponse:
        started_s = time.monotonic()
        body = await self.gateway.read_body(request)
        content = body.get("content")
        if not isinstance(content, str) or not content:
            raise BadRequest("'content' is required and must be a non-empty string.", param="content")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("'stream' must be a boolean.", param="stream", code="invalid_value")
        async with self.store.lock(request.match_info["id"]):
            session, admitted = await self._owned(request)
            model = admitted.model
            counter = self.gateway.token_counter(model)
            user = {"role": "user", "content": content}
            prompt = trim_history([*session.prompt_messages(), user], model.history_token_budget, counter)
            upstream: dict[str, Any] = {"model": admitted.adapter or model.served_name, "messages": prompt}
            upstream.update({k: body[k] for k in PASSED_OPTIONS if k in body})
            max_tokens = requested_max_tokens(upstream)
            if max_tokens is not None and max_tokens > model.limits.max_tokens_cap:
                raise BadRequest(
                    f"max_tokens {max_tokens} is over this model's cap of {model.limits.max_tokens_cap}.",
                    param="max_tokens",
                    code="max_tokens_over_cap",
                )
            if stream:
                upstream["stream"] = True
                upstream["stream_options"] = {"include_usage": True}
            self.gateway.charge(admitted, upstream)
            collector = SseText()
            response, outcome = await self.gateway.forward(
                request,
                admitted,
                path="/v1/chat/completions",
                body=upstream,
                key=f"s:{session.id}",
                started_s=started_s,
                tap=collector.feed if stream else None,
            )
            if outcome.status != 200:
                return response
            usage: dict[str, Any] | None
            if stream:
                reply, usage = collector.text, collector.usage
            else:
                answer = json.loads(outcome.body or b"{}")
                reply = answer["choices"][0]["message"].get("content") or ""
                usage = answer.get("usage")
            kept = trim_history([*prompt, {"role": "assistant", "content": reply}], model.history_token_budget, counter)
            session.messages = [dict(m) for m in kept if m.get("role") != "system"]
            session.updated_s = time.time()
            await self.store.save(session)
        if stream:
            return response
        view = {
            "id": session.id,
            "object": "dialogue.message",
            "message": {"role": "assistant", "content": reply},
            "usage": usage,
            "history_messages": len(session.messages),
            "history_tokens": history_tokens(session.prompt_messages(), counter),
        }
        return web.json_response(view)
