"""Helpers for the tests against the local cluster: polling and reading objects through kubectl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from e2e.cluster.harness import LocalCluster


def wait_for(predicate: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    """Polls `predicate` until it is true; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def get_json(cluster: LocalCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def pods(cluster: LocalCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]
    return items


def apply(cluster: LocalCluster, manifest: str, namespace: str | None = None) -> None:
    args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
    cluster.kubectl(*args, input=manifest)
