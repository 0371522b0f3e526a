"""Autoscaling end to end on the local cluster: sim engines on the process-backed node, the real operator (chart
ServiceAccount) and the real gateway (chart RBAC). Load through the gateway rises -> replicas grow; load stops ->
replicas shrink to one, then to zero after the idle period; a request at zero is held and answered once a replica
is Ready. Every request's HTTP status is recorded: none may fail. The scenario itself is `e2e.autoscale_e2e`.

The operator runs with a 1 s autoscaler tick and short policy windows (DIALOGUE_OPERATOR_AUTOSCALE_POLICY), and
each sim replica serves two sequences at 20 tok/s, so six conversations saturate it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from dialogue_operator.autoscale.policy import Reason

from e2e.autoscale_e2e import (
    MAX_REPLICAS,
    MODEL,
    POLICY,
    dialogue_model,
    get_json,
    model_events,
    run_scenario,
    step,
)
from e2e.cluster.harness import LocalCluster
from tests.integration.gateway.conftest import Proc, Procs, free_port, wait_http
from tests.integration.gateway.test_discovery_cluster import chart_rbac_kubeconfig
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures used by this module)
    OperatorProcess,
    chart_release,
    start_operator,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]


def start_gateway(cluster: LocalCluster, namespace: str, procs: Procs, hold_timeout_s: float) -> Proc:
    """The real gateway, discovering pods in `namespace` with the chart's gateway ServiceAccount and RBAC."""
    port = free_port("127.0.0.1")
    kubeconfig = str(chart_rbac_kubeconfig(cluster, namespace, procs.workdir))
    args = [sys.executable, "-m", "dialogue_runtime.gateway", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--kubeconfig", kubeconfig, "--namespace", namespace, "--log-level", "WARNING"]
    args += ["--hold-timeout-s", str(hold_timeout_s)]
    gateway = procs.spawn(args, f"http://127.0.0.1:{port}", "gateway")
    wait_http(gateway.url + "/healthz", timeout_s=60, proc=gateway.popen)
    return gateway


def test_load_scales_up_idle_scales_to_zero_and_a_held_request_scales_from_zero(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    procs = Procs(tmp_path)
    try:
        step("applying the DialogueModel (sim engine, autoscaling 0..3) and starting the gateway")
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(dialogue_model()))
        gateway = start_gateway(cluster, namespace, procs, hold_timeout_s=180)
        monkeypatch.setenv("DIALOGUE_OPERATOR_AUTOSCALE_POLICY", POLICY)
        monkeypatch.setenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", gateway.url + "/metrics")
        step("starting the operator (chart ServiceAccount, 1 s autoscaler tick)")
        start_operator([namespace])

        numbers, timeline = run_scenario(cluster, namespace, gateway.url)

        # The replica counts went 0 -> 1 -> 3 -> ... -> 1 -> 0 -> 1, and each change left an Event with a reason.
        counts = [spec for spec, _ in timeline.history()]
        peak = counts.index(MAX_REPLICAS)
        assert 1 in counts[peak:] and 0 in counts[counts.index(1, peak) :], f"replica counts seen: {counts}"
        reasons = [e["reason"] for e in model_events(cluster, namespace, MODEL)]
        step(f"events: {reasons}")
        assert "ScaleFromZero" in reasons, reasons
        assert {"Panic", "LoadAboveTarget", "QueuePressure"} & set(reasons), reasons
        assert "LoadBelowTarget" in reasons, reasons
        assert "ScaleToZero" in reasons, reasons
        recent = get_json(cluster, "dialoguemodel", MODEL, "-n", namespace)["status"]["autoscaling"]["recentDecisions"]
        assert [(d["from"], d["to"], d["reason"]) for d in recent][-2:] == [
            (1, 0, "ScaleToZero"),
            (0, 1, "ScaleFromZero"),
        ]
        assert set(numbers.statuses) == {200}, f"HTTP statuses seen: {numbers.statuses}"
        # `kubectl get dm -o wide` shows the autoscaler's last decision next to the replica counts.
        header, row = cluster.kubectl("get", "dm", MODEL, "-n", namespace, "-o", "wide").stdout.splitlines()[:2]
        step(f"kubectl get dm -o wide:\n{header}\n{row}")
        start, end = header.index("SCALING"), header.index("REPLICAS")  # columns are aligned; some may be empty
        assert row[start:end].strip() in {v for k, v in vars(Reason).items() if k.isupper()}, (header, row)
        step(f"done in {time.monotonic() - started:.0f} s: {numbers}")
    finally:
        procs.stop_all()
