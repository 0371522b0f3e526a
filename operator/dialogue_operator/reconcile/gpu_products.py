"""Unschedulable because of the GPU product: the condition names the product asked and those nodes offer (pure).

The scheduler's own text (`0/53 nodes are available: 53 node(s) didn't match Pod's node affinity/selector`) does
not say which label failed. When the spec asks for `spec.resources.gpuProduct` and a runtime pod cannot be
scheduled, the operator reads the `nvidia.com/gpu.product` labels of the nodes (one LIST, cached, only then) and
the message says whether any node offers the product, and which products the nodes have.
"""

from __future__ import annotations

from dataclasses import replace

from dialogue_operator.api import status as st
from dialogue_operator.reconcile.conditions import Problem

SCHEDULING_REASONS = frozenset({st.REASON_UNSCHEDULABLE, st.REASON_INSUFFICIENT_GPU})
# What the nodes offer: their product labels, or why they could not be read.
Offered = tuple[str, ...] | str


def needs_products(problem: Problem | None, asked: str | None) -> bool:
    """Whether the node labels are worth reading: a scheduling problem of a model that asks for a product."""
    return asked is not None and problem is not None and problem.reason in SCHEDULING_REASONS


def with_products(problem: Problem | None, asked: str | None, offered: Offered | None) -> Problem | None:
    """The problem, its message prefixed with what the product and the nodes' labels say (unchanged otherwise)."""
    if problem is None or offered is None or not needs_products(problem, asked):
        return problem
    head = f'GPU product "{asked}" (spec.resources.gpuProduct)'
    if isinstance(offered, str):
        said = f"{head}: cannot read the nodes' products ({offered})"
    elif asked not in offered:
        listed = ", ".join(offered) if offered else "none (no node has the nvidia.com/gpu.product label)"
        said = f"{head} is offered by no node; products on nodes: {listed}"
    else:
        said = f"{head} is offered by some nodes, but none of them can take the pod now"
    return replace(problem, message=f"{said}. Scheduler: {problem.message}")
