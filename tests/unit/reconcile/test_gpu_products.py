"""A pod that cannot be scheduled for its GPU product: the message names the product and what nodes offer."""

from __future__ import annotations

from datetime import UTC, datetime

from dialogue_operator.reconcile import ModelObject, Observed, PodSummary, reconcile
from dialogue_operator.reconcile.conditions import Problem
from dialogue_operator.reconcile.gpu_products import needs_products, with_products
from dialogue_operator.settings import Settings

from tests.unit.reconcile.conftest import model_body

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SCHEDULER = "0/53 nodes are available: 53 node(s) didn't match Pod's node affinity/selector."
OFFERED = ("NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "NVIDIA-L4")


def _ready(gpu_products: tuple[str, ...] | str | None) -> dict[str, str]:
    body = model_body()
    body["spec"]["resources"] = {"gpus": 1, "gpuProduct": "NVIDIA-H200-141GB"}
    pod = PodSummary(name="chat-base-x", variant="base", unschedulable_message=SCHEDULER)
    plan = reconcile(ModelObject.from_body(body), Observed(pods=(pod,), gpu_products=gpu_products), Settings(), NOW)
    ready: dict[str, str] = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    return ready


def test_a_product_no_node_offers_is_named_with_the_products_nodes_have() -> None:
    ready = _ready(OFFERED)
    assert ready["reason"] == "Unschedulable"
    assert ready["message"] == (
        'GPU product "NVIDIA-H200-141GB" (spec.resources.gpuProduct) is offered by no node; products on nodes: '
        f"NVIDIA-A100-SXM4-80GB, NVIDIA-H100-80GB-HBM3, NVIDIA-L4. Scheduler: {SCHEDULER}"
    )


def test_nodes_that_cannot_be_read_are_said_so() -> None:
    ready = _ready("the operator may not list nodes: grant `list` on nodes (chart value rbac.readNodes)")
    assert "cannot read the nodes' products (the operator may not list nodes" in ready["message"]
    assert SCHEDULER in ready["message"]


def test_no_product_label_anywhere_and_unread_nodes() -> None:
    assert "none (no node has the nvidia.com/gpu.product label)" in _ready(())["message"]
    assert _ready(None)["message"] == SCHEDULER  # not read: the scheduler's words alone


def test_only_scheduling_problems_of_models_asking_a_product_read_the_nodes() -> None:
    unschedulable = Problem("Unschedulable", SCHEDULER, 40)
    assert needs_products(unschedulable, "NVIDIA-L4")
    assert not needs_products(unschedulable, None)
    assert not needs_products(Problem("CrashLooping", "x", 65), "NVIDIA-L4")
    assert not needs_products(None, "NVIDIA-L4")
    offered = with_products(
        Problem("InsufficientGPU", "0/3 nodes: Insufficient nvidia.com/gpu", 50), "NVIDIA-L4", OFFERED
    )
    assert offered is not None and "is offered by some nodes, but none of them can take the pod now" in offered.message
