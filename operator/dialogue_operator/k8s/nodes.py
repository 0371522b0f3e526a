"""The GPU products the cluster's nodes offer, read only when a model cannot be scheduled (I/O layer).

One LIST of the nodes that carry the `nvidia.com/gpu.product` label (the chart grants `list` on nodes, never
`watch`: the operator keeps no node cache), kept for `TTL_S` so that many unschedulable models cost one read.
A refused or failed LIST is reported in words, never raised: the condition then says why it cannot name them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dialogue_runtime import contract

from dialogue_operator.k8s.api import KubeApi, KubeError
from dialogue_operator.k8s.resources import NODE
from dialogue_operator.reconcile.gpu_products import Offered

TTL_S = 30.0


class GpuProducts:
    """`await products()`: the sorted product labels, or why they could not be read; cached for `TTL_S`."""

    def __init__(self, api: KubeApi, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.clock = clock
        self._cached: tuple[float, Offered] | None = None

    async def __call__(self) -> Offered:
        now = self.clock()
        if self._cached is not None and now - self._cached[0] < TTL_S:
            return self._cached[1]
        offered: Offered
        try:
            listed = await self.api.list(NODE, contract.GPU_PRODUCT_LABEL)
        except KubeError as exc:
            offered = (
                "the operator may not list nodes: grant `list` on nodes (chart value rbac.readNodes)"
                if exc.status == 403
                else f"listing nodes failed: {exc}"
            )
        else:
            labels = ((n.get("metadata") or {}).get("labels") or {} for n in listed.get("items") or [])
            offered = tuple(sorted({str(v) for lab in labels if (v := lab.get(contract.GPU_PRODUCT_LABEL))}))
        self._cached = (now, offered)
        return offered
