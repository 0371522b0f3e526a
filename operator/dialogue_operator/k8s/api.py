"""The operator's only door to the API server: server-side apply, delete, list, watch, status patch, events."""

from __future__ import annotations

import json
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from dialogue_runtime import contract
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from dialogue_operator.k8s.resources import CHILD_RESOURCES, DIALOGUE_MODEL, EVENT, POD, Resource

logger = logging.getLogger(__name__)
MUTATING_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class KubeError(Exception):
    """An API request failed; the message says what was being done."""

    def __init__(self, doing: str, status: int | None, detail: str) -> None:
        super().__init__(f"{doing}: HTTP {status}: {detail}")
        self.status = status


class ApplyError(KubeError):
    """Server-side apply of a child failed."""


def _message(body: str | bytes | None, reason: object) -> str:
    """The `message` of a Kubernetes Status body, else the HTTP reason."""
    try:
        return str(json.loads(body or b"{}").get("message", reason))
    except (TypeError, ValueError, AttributeError):
        return str(reason)


def _detail(exc: ApiException) -> str:
    return _message(exc.body, exc.reason)


async def connect() -> ApiClient:
    """An API client with in-cluster credentials when running in a pod, else from the kubeconfig ($KUBECONFIG)."""
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        await kube_config.load_kube_config()
    return ApiClient()


class KubeApi:
    """Async Kubernetes API adapter (kubernetes_asyncio underneath); counts every mutating request by verb."""

    def __init__(self, client: ApiClient, field_manager: str = contract.FIELD_MANAGER) -> None:
        self._client = client
        self.field_manager = field_manager
        self.mutations: Counter[str] = Counter()  # "VERB Kind" -> count, for metrics and tests
        self.instance = socket.gethostname()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        doing: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        kind: str = "",
        timeout_s: float | None = 30.0,
        error: type[KubeError] = KubeError,
    ) -> Any:
        if method in MUTATING_VERBS:
            self.mutations[f"{method} {kind}"] += 1
        try:
            resp = await self._client.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=timeout_s,
            )
        except ApiException as exc:
            raise error(doing, exc.status, _detail(exc)) from exc
        if resp.status >= 400:  # with _preload_content=False the client returns error responses instead of raising
            body_text = await resp.text()
            resp.release()
            raise error(doing, resp.status, _message(body_text, resp.reason))
        return resp

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = await self._call(method, path, **kw)
        data: dict[str, Any] = await resp.json()
        return data

    async def apply(self, obj: dict[str, Any], resource: Resource | None = None) -> dict[str, Any]:
        """Server-side apply `obj` (a child kind, else `resource`) under the operator's field manager, taking
        ownership of conflicting fields."""
        resource = resource or CHILD_RESOURCES[obj["kind"]]
        meta = obj["metadata"]
        return await self._json(
            "PATCH",
            resource.path(meta["namespace"], meta["name"]),
            doing=f"applying {obj['kind']} {meta['namespace']}/{meta['name']}",
            query=[("fieldManager", self.field_manager), ("force", "true")],
            body=obj,
            content_type="application/apply-patch+yaml",
            kind=obj["kind"],
            error=ApplyError,
        )

    async def delete(self, kind: str, namespace: str, name: str, resource: Resource | None = None) -> None:
        """Delete a child (or an object of `resource`); one that is already gone is fine."""
        resource = resource or CHILD_RESOURCES[kind]
        try:
            await self._call(
                "DELETE",
                resource.path(namespace, name),
                doing=f"deleting {kind} {namespace}/{name}",
                body={"propagationPolicy": "Background"},
                kind=kind,
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the DialogueModel status subresource (never the spec); a deleted model is fine."""
        try:
            await self._call(
                "PATCH",
                DIALOGUE_MODEL.path(namespace, name, "status"),
                doing=f"writing status of DialogueModel {namespace}/{name}",
                body={"status": status},
                content_type="application/merge-patch+json",
                kind=DIALOGUE_MODEL.kind,
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def annotate(self, resource: Resource, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge-patch annotations onto one object (e.g. a pod's deletion cost); one that is already gone is fine."""
        try:
            await self._call(
                "PATCH",
                resource.path(namespace, name),
                doing=f"annotating {resource.kind} {namespace}/{name}",
                body={"metadata": {"annotations": annotations}},
                content_type="application/merge-patch+json",
                kind=resource.kind,
                timeout_s=10.0,
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def post_event(self, model: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event on a DialogueModel (shown by kubectl describe)."""
        meta = model["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": DIALOGUE_MODEL.api_version,
                "kind": DIALOGUE_MODEL.kind,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": contract.FIELD_MANAGER},
            "reportingComponent": contract.FIELD_MANAGER,
            "reportingInstance": self.instance,
        }
        try:
            await self._call(
                "POST", EVENT.path(meta["namespace"]), doing=f"posting event {reason}", body=event, kind="Event"
            )
        except KubeError as exc:  # Events are best effort (as client-go's recorder): a lost one must not fail a step
            logger.warning("%s/%s: %s", meta["namespace"], meta["name"], exc)

    async def read_log(self, namespace: str, pod: str, container: str, tail_lines: int = 40) -> str:
        """The last `tail_lines` lines of a container's log (needs the `pods/log` get permission)."""
        resp = await self._call(
            "GET",
            POD.path(namespace, pod, "log"),
            doing=f"reading the log of pod {namespace}/{pod}",
            query=[("container", container), ("tailLines", str(tail_lines))],
            timeout_s=10.0,
        )
        text: str = await resp.text()
        return text

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist (404)."""
        try:
            return await self._json(
                "GET",
                resource.path(namespace, name),
                doing=f"reading {resource.kind} {namespace}/{name}",
                timeout_s=10.0,
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, resource: Resource, label_selector: str, namespace: str | None = None) -> dict[str, Any]:
        """One LIST (items and the list's resourceVersion)."""
        return await self._json(
            "GET",
            resource.path(namespace),
            doing=f"listing {resource.plural}",
            query=[("labelSelector", label_selector)],
            timeout_s=120.0,
        )

    async def watch(
        self, resource: Resource, label_selector: str, resource_version: str, namespace: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events ({type, object}) from `resource_version` until the server closes the watch."""
        resp = await self._call(
            "GET",
            resource.path(namespace),
            doing=f"watching {resource.plural}",
            query=[
                ("watch", "1"),
                ("labelSelector", label_selector),
                ("resourceVersion", resource_version),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", "240"),
            ],
            timeout_s=None,
        )
        try:
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            resp.release()
