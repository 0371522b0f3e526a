"""A GPU product no node offers: the operator (with the chart's RBAC) names it and the products nodes have."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.cluster.harness import LocalCluster
from e2e.cluster.nodes import GPU_PRODUCTS
from tests.integration.operator.conftest import OperatorProcess, apply, condition, dialogue_model, get_json, wait_for

pytestmark = pytest.mark.cluster


def test_a_product_no_node_offers_is_named_with_the_products_on_nodes(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    spec = {"model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
            "resources": {"gpus": 1, "gpuProduct": "NVIDIA-H200-141GB"}}  # fmt: skip
    assert apply(cluster, namespace, dialogue_model("h200", spec)).returncode == 0

    def named() -> dict[str, Any] | None:
        ready = condition(get_json(cluster, "dm", "h200", "-n", namespace))
        return ready if "NVIDIA-H200-141GB" in ready.get("message", "") else None

    ready = wait_for(named, timeout_s=60, what="Ready naming the GPU product")
    assert ready["status"] == "False" and ready["reason"] == "Unschedulable", ready
    assert "is offered by no node; products on nodes:" in ready["message"]
    for product in GPU_PRODUCTS:  # every product the cluster's nodes carry, read from their labels
        assert product in ready["message"], ready
    assert "Scheduler: 0/" in ready["message"]  # the scheduler's own words follow
