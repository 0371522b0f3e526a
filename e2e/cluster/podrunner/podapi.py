"""The pod runner's writes and reads of Pod-related objects: status patches, the final delete, referenced
Secrets and ConfigMaps (e2e I/O layer)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from e2e.cluster.podrunner.envvars import ObjectSource
from e2e.cluster.podrunner.kubeapi import STRATEGIC_PATCH, ApiError, KubeClient


def patch_status(client: KubeClient, pod: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """Strategic-merge patch of pods/status (conditions merge by type; container statuses are atomic lists).
    The uid in the body makes the server refuse a patch meant for an earlier pod of the same name."""
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
    body = {"metadata": {"uid": meta["uid"]}, "status": dict(status)}
    return client.request("PATCH", path, body=body, content_type=STRATEGIC_PATCH, timeout_s=10)


def delete_now(client: KubeClient, pod: Mapping[str, Any]) -> None:
    """Delete the object with grace 0 once its processes are gone, as a kubelet does; a pod already gone, or
    replaced by another of the same name, is left alone."""
    meta = pod["metadata"]
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
    try:
        client.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body=body, timeout_s=10)
    except ApiError as exc:
        if exc.status not in (404, 409):
            raise


def object_source(client: KubeClient) -> ObjectSource:
    """Secrets' and ConfigMaps' data for env resolution (None when the object does not exist)."""

    def secret(namespace: str, name: str) -> Mapping[str, str] | None:
        obj = client.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        return None if obj is None else dict(obj.get("data") or {})

    def configmap(namespace: str, name: str) -> Mapping[str, str] | None:
        obj = client.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        return None if obj is None else dict(obj.get("data") or {})

    return ObjectSource(secret=secret, configmap=configmap)
