"""List-then-watch caches of the operator's children and runtime pods, indexed by owning model (I/O layer).

kopf watches DialogueModels; children are watched here because a reconcile must not run before the first
LIST of every child kind has landed (otherwise a restarted operator would re-apply every child once), and kopf
gives no signal for "initial listing complete".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from dialogue_runtime import contract

from dialogue_operator.k8s.api import KubeApi, KubeError
from dialogue_operator.k8s.resources import Resource
from dialogue_operator.reconcile.observed import PodSummary

logger = logging.getLogger(__name__)

ModelKey = tuple[str, str]  # (namespace, model name)
MANAGED_SELECTOR = f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY}"
RETRY_DELAY_S = 2.0


def _compact(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop what the reconcile never reads (managedFields dominate object size)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


class Informer:
    """Keeps every object of one resource that the operator manages, grouped by (namespace, model)."""

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        on_change: Callable[[ModelKey], None],
        namespace: str | None = None,
        summarize: Callable[[dict[str, Any]], Any] = _compact,
    ) -> None:
        self._api = api
        self.resource = resource
        self._on_change = on_change
        self.namespace = namespace
        self._summarize = summarize
        self._by_model: dict[ModelKey, dict[str, Any]] = {}
        self.synced = asyncio.Event()

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[ModelKey, str] | None:
        meta = obj.get("metadata") or {}
        model = (meta.get("labels") or {}).get(contract.LABEL_MODEL)
        if not model:
            return None
        return (str(meta.get("namespace", "")), str(model)), str(meta.get("name", ""))

    def objects(self, key: ModelKey) -> dict[str, Any]:
        """name -> cached object (or summary) of one model's children of this kind."""
        return dict(self._by_model.get(key, {}))

    def size(self) -> int:
        """Objects cached."""
        return sum(len(v) for v in self._by_model.values())

    def put(self, obj: dict[str, Any]) -> None:
        """Cache an object the operator just wrote (an apply response) unless a newer version is cached."""
        found = self._key(obj)
        if found is None:
            return
        key, name = found
        bucket = self._by_model.setdefault(key, {})
        current = bucket.get(name)
        if current is None or _version(obj) >= _version(current):
            bucket[name] = self._summarize(obj)

    def _store(self, obj: dict[str, Any]) -> None:
        found = self._key(obj)
        if found is not None:
            key, name = found
            self._by_model.setdefault(key, {})[name] = self._summarize(obj)
            self._on_change(key)

    def _forget(self, obj: dict[str, Any]) -> None:
        found = self._key(obj)
        if found is not None:
            key, name = found
            bucket = self._by_model.get(key, {})
            bucket.pop(name, None)
            if not bucket:
                self._by_model.pop(key, None)
            self._on_change(key)

    async def _relist(self) -> str:
        listing = await self._api.list(self.resource, MANAGED_SELECTOR, self.namespace)
        before = set(self._by_model)
        self._by_model = {}
        for item in listing.get("items") or []:
            item.setdefault("kind", self.resource.kind)
            found = self._key(item)
            if found is not None:
                key, name = found
                self._by_model.setdefault(key, {})[name] = self._summarize(item)
        for key in before | set(self._by_model):
            self._on_change(key)
        return str((listing.get("metadata") or {}).get("resourceVersion", ""))

    async def run(self) -> None:
        """LIST, then WATCH from the list's version; relist when the watch expires (410) or fails."""
        version = ""
        while True:
            try:
                if not version:
                    version = await self._relist()
                    self.synced.set()
                async for event in self._api.watch(self.resource, MANAGED_SELECTOR, version, self.namespace):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        version = ""  # 410 Gone: the version is too old, list again
                        break
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind == "BOOKMARK":
                        continue
                    obj.setdefault("kind", self.resource.kind)
                    if kind == "DELETED":
                        self._forget(obj)
                    else:
                        self._store(obj)
            except asyncio.CancelledError:
                raise
            except (KubeError, OSError, ValueError, TimeoutError) as exc:
                logger.warning("watch of %s failed, relisting in %.0f s: %s", self.resource.plural, RETRY_DELAY_S, exc)
                version = ""
                await asyncio.sleep(RETRY_DELAY_S)
            except Exception:  # a dead informer would leave the cache stale forever: log, relist, go on
                logger.exception("informer of %s failed, relisting in %.0f s", self.resource.plural, RETRY_DELAY_S)
                version = ""
                await asyncio.sleep(RETRY_DELAY_S)


class InformerGroup:
    """Informers of one resource over several namespaces, read as one (a model's children share its namespace)."""

    def __init__(self, members: list[Informer]) -> None:
        self.members = members

    def objects(self, key: ModelKey) -> dict[str, Any]:
        """name -> cached object of one model's children of this kind."""
        found: dict[str, Any] = {}
        for informer in self.members:
            found.update(informer.objects(key))
        return found

    def put(self, obj: dict[str, Any]) -> None:
        """Cache a just-written object in the informer of its namespace."""
        namespace = (obj.get("metadata") or {}).get("namespace")
        for informer in self.members:
            if informer.namespace in (None, namespace):
                informer.put(obj)
                return

    def size(self) -> int:
        """Objects cached."""
        return sum(i.size() for i in self.members)


def _version(obj: dict[str, Any]) -> int:
    """An object's resourceVersion as a number (etcd revisions in practice; 0 when absent or opaque)."""
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def pod_summary(obj: dict[str, Any]) -> PodSummary:
    """Pods are cached as summaries: a cluster can hold thousands of runtime pods."""
    return PodSummary.from_pod(obj)
