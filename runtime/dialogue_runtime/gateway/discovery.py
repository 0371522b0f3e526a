"""Discovery from Kubernetes: runtime Pods, DialogueModels and their API-key Secrets (I/O layer, kubernetes_asyncio).

Pods labelled `dialogue.dev/model` are endpoints while Ready with an IP and not terminating; an endpoint leaves
the rotation on the watch event that says otherwise. DialogueModels give served names, variant weights
(`status.variants[].weight`), dialogue settings and the Secret holding API keys (read with `get`; a Secret that
cannot be read makes the model refuse every key: fail closed). Each watch relists every `resync_s` and after any
error, so a missed event heals. When a request is held at zero the DialogueModel gets the annotation
`dialogue.dev/scale-from-zero-requested-at: <RFC 3339>` by merge patch (at most every `notify_cooldown_s`), which
the operator's autoscaler watches, so scale-from-zero does not wait for a metrics scrape.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from dialogue_runtime import contract
from dialogue_runtime.gateway.auth import parse_secret_keys
from dialogue_runtime.gateway.balancer import replica_id
from dialogue_runtime.gateway.metrics import GatewayMetrics
from dialogue_runtime.gateway.registry import Registry
from dialogue_runtime.gateway.resources import Endpoint, ModelInfo, parse_dialogue_model, parse_pod
from dialogue_runtime.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

ANNOTATION_SCALE_FROM_ZERO = "dialogue.dev/scale-from-zero-requested-at"
RETRY_BACKOFF_S = 2.0
# A key nobody can present: a model whose Secret cannot be read accepts no request.
_UNREADABLE_SECRET = frozenset({"unreadable-secret:" + secrets.token_hex(32)})

Obj = dict[str, Any]
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


class KubeDiscovery:
    """Keeps the registry in step with the cluster."""

    def __init__(self, settings: GatewaySettings, registry: Registry, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self._pods: dict[tuple[str, str], Endpoint | None] = {}
        self._models: dict[str, Obj] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._notified_s: dict[str, float] = {}
        self._api: client.ApiClient | None = None
        self._synced = {"pods": asyncio.Event(), "models": asyncio.Event()}

    async def start(self) -> None:
        if self.settings.kubeconfig:
            await config.load_kube_config(config_file=self.settings.kubeconfig)
        else:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        self._api = client.ApiClient()
        self._tasks = [
            asyncio.create_task(self._run("models", self._list_models, self._on_model)),
            asyncio.create_task(self._run("pods", self._list_pods, self._on_pod)),
        ]
        # Serve with a complete view: wait (bounded) for the first list of each kind.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.gather(*(e.wait() for e in self._synced.values()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._api is not None:
            await self._api.close()

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self._api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self._api)

    # --- list + watch with resync ------------------------------------------------------------------

    async def _list_models(self, **kwargs: Any) -> Any:
        group, version, plural = contract.API_GROUP, contract.API_VERSION, contract.PLURAL
        if self.settings.namespace:
            return await self.custom.list_namespaced_custom_object(
                group, version, self.settings.namespace, plural, **kwargs
            )
        return await self.custom.list_cluster_custom_object(group, version, plural, **kwargs)

    async def _list_pods(self, **kwargs: Any) -> Any:
        kwargs["label_selector"] = contract.LABEL_MODEL
        if self.settings.namespace:
            return await self.core.list_namespaced_pod(self.settings.namespace, **kwargs)
        return await self.core.list_pod_for_all_namespaces(**kwargs)

    async def _run(
        self,
        kind: str,
        lister: Callable[..., Awaitable[Any]],
        on_event: Callable[[str, Obj], Awaitable[None]],
    ) -> None:
        while True:
            try:
                listed = await lister(_preload_content=False)
                body = await listed.json(content_type=None)
                items = listed_items(kind, listed.status, body)
                await self._replace_all(kind, items, on_event)
                self._synced[kind].set()
                version = body.get("metadata", {}).get("resourceVersion")
                watcher = watch.Watch()
                try:
                    events = watcher.stream(
                        lister,
                        resource_version=version,
                        timeout_seconds=int(self.settings.resync_s),
                        allow_watch_bookmarks=True,
                    )
                    async for event in events:
                        kind_of_event = event.get("type")
                        raw = event.get("raw_object") or {}
                        if kind_of_event in ("ADDED", "MODIFIED", "DELETED"):
                            await on_event(str(kind_of_event), raw)
                        elif kind_of_event == "ERROR":
                            break
                finally:
                    watcher.stop()
            except asyncio.CancelledError:
                raise
            except (ApiException, OSError, TimeoutError, ValueError) as exc:
                log.warning("watching %s failed (%s); relisting in %.0f s", kind, exc, RETRY_BACKOFF_S)
                await asyncio.sleep(RETRY_BACKOFF_S)

    async def _replace_all(self, kind: str, items: list[Obj], on_event: Callable[[str, Obj], Awaitable[None]]) -> None:
        if kind == "pods":
            seen = {(_meta(p, "namespace"), _meta(p, "name")) for p in items}
            for gone in [k for k in self._pods if k not in seen]:
                await self._on_pod("DELETED", {"metadata": {"namespace": gone[0], "name": gone[1]}})
        else:
            seen_refs = {f"{_meta(m, 'namespace')}/{_meta(m, 'name')}" for m in items}
            for gone_ref in [r for r in self._models if r not in seen_refs]:
                await self._on_model("DELETED", self._models[gone_ref])
        for item in items:
            await on_event("MODIFIED", item)

    # --- events ------------------------------------------------------------------------------------

    async def _on_pod(self, event: str, pod: Obj) -> None:
        key = (_meta(pod, "namespace"), _meta(pod, "name"))
        component = (pod.get("metadata", {}).get("labels") or {}).get(contract.LABEL_COMPONENT)
        before = self._pods.get(key)
        endpoint = None if event == "DELETED" or component not in (None, contract.COMPONENT_RUNTIME) else parse_pod(pod)
        if event == "DELETED":
            self._pods.pop(key, None)
        else:
            self._pods[key] = endpoint
        for changed in {e.model_ref for e in (before, endpoint) if e is not None}:
            self._publish_endpoints(changed)

    def _publish_endpoints(self, model_ref: str) -> None:
        endpoints = [e for e in self._pods.values() if e is not None and e.model_ref == model_ref]
        self.registry.set_endpoints(model_ref, endpoints)
        namespace, _, name = model_ref.partition("/")
        counts: dict[str, int] = {}
        for endpoint in endpoints:
            counts[endpoint.variant] = counts.get(endpoint.variant, 0) + 1
        self.metrics.set_endpoints(namespace, name, counts, {replica_id(e.url) for e in endpoints})

    async def _on_model(self, event: str, obj: Obj) -> None:
        namespace, name = _meta(obj, "namespace"), _meta(obj, "name")
        ref = f"{namespace}/{name}"
        if event == "DELETED":
            self._models.pop(ref, None)
            self.registry.remove_model(ref)
            self.metrics.forget_model(namespace, name)
            return
        self._models[ref] = obj
        model = parse_dialogue_model(obj)
        keys, problem = await self._read_keys(model)
        self.registry.set_model(
            dataclasses.replace(model, api_keys=keys, keys_problem=problem, limits=self.settings.limits)
        )

    async def _read_keys(self, model: ModelInfo) -> tuple[frozenset[str], str | None]:
        """The model's API keys, or a key nobody holds and why (the model then answers 503 naming it)."""
        ref = model.api_key_ref
        if ref is None:
            return frozenset(), None
        try:
            secret = await self.core.read_namespaced_secret(ref.name, model.namespace)
        except ApiException as exc:
            log.warning(
                "model %s: API-key Secret %s unreadable (HTTP %s); refusing every key", model.ref, ref.name, exc.status
            )
            if exc.status == 404:
                return _UNREADABLE_SECRET, f"its API-key Secret {ref.name!r} does not exist"
            return _UNREADABLE_SECRET, f"its API-key Secret {ref.name!r} cannot be read (HTTP {exc.status})"
        encoded = (secret.data or {}).get(ref.key)
        if not encoded:
            log.warning("model %s: Secret %s has no key %r; refusing every key", model.ref, ref.name, ref.key)
            return _UNREADABLE_SECRET, f"its API-key Secret {ref.name!r} has no key {ref.key!r}"
        keys = parse_secret_keys(base64.b64decode(encoded).decode("utf-8", "replace"))
        return (keys, None) if keys else (_UNREADABLE_SECRET, f"its API-key Secret {ref.name!r} holds no key")

    # --- telling the operator ----------------------------------------------------------------------

    async def notify_hold(self, model: ModelInfo) -> None:
        """Annotate the DialogueModel so the autoscaler scales it from zero now (rate-limited per model)."""
        now_s = time.monotonic()
        if now_s - self._notified_s.get(model.ref, -1e9) < self.settings.notify_cooldown_s:
            return
        self._notified_s[model.ref] = now_s
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"metadata": {"annotations": {ANNOTATION_SCALE_FROM_ZERO: stamp}}}
        try:
            await self.custom.patch_namespaced_custom_object(
                contract.API_GROUP,
                contract.API_VERSION,
                model.namespace,
                contract.PLURAL,
                model.name,
                patch,
                **MERGE_PATCH,
            )
        except ApiException as exc:
            self._notified_s.pop(model.ref, None)
            log.warning("annotating DialogueModel %s for scale-from-zero failed: HTTP %s", model.ref, exc.status)


def _meta(obj: Obj, field: str) -> str:
    return str((obj.get("metadata") or {}).get(field) or "")


def listed_items(kind: str, status: int, body: Any) -> list[Obj]:
    """The items of a list response, or ValueError when it is not a list (with `_preload_content=False` the client
    does not check the status: a 429 "storage is (re)initializing" body must not read as an empty list, which would
    drop every model or endpoint until the next relist)."""
    if not 200 <= status < 300 or not isinstance(body, dict) or not str(body.get("kind", "")).endswith("List"):
        message = body.get("message") if isinstance(body, dict) else None
        raise ValueError(f"listing {kind} answered HTTP {status}: {message or 'not a list'}")
    items = body.get("items") or []
    return [item for item in items if isinstance(item, dict)]
