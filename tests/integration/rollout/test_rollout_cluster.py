"""Progressive rollout on the local cluster: sim engines on the process-backed node, the real operator (chart
ServiceAccount, 1 s rollout tick) and, for the analysis, the real gateway (chart RBAC) under a steady streamed load.

- An online-quantized variant (no compression Job) is rolled out 50 % -> 100 %: the canary Deployment appears,
  `status.rollout` and `status.variants[].weight` step up, the gateway's per-variant metrics pass the analysis,
  and the variant is promoted (the base Deployment goes); no request fails during the whole rollout.
- A canary whose engine keeps dying (its process is killed, as the OOM killer would) is rolled back: phase
  RolledBack, reason CanaryCrashLooping, its Deployment removed, while the base keeps its Ready replica.
- spec.rollout.paused holds the split, clearing it resumes, spec.rollout.abort sends all traffic back to base.
- A canary slower than the TTFT threshold (a per-variant sim profile) is rolled back with the measured ratio in
  status.rollout and the VariantReady condition, while the base serves every request.
- The API server refuses bad quality gates and engine overrides, naming the field.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster.harness import LocalCluster
from tests.integration.gateway.conftest import Proc, Procs, free_port, wait_http
from tests.integration.gateway.test_discovery_cluster import chart_rbac_kubeconfig
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures used by this module)
    OperatorProcess,
    Release,
    chart_release,
    get_json,
    start_operator,
    wait_for,
)
from tests.integration.rollout.load import ChatLoad

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

MODEL = "chat"
STARTED = time.monotonic()


def step(what: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f} s] {what}", flush=True)


def dialogue_model(rollout: dict[str, Any]) -> dict[str, Any]:
    """A fast sim engine on the process-backed node, one replica, an fp8 (online quantization) variant."""
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": MODEL},
        "spec": {
            "model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
            "engine": {"kind": "sim", "sim": {"decodeTokensPerSecond": 200, "maxDecodeTokensPerSecond": 2000}},
            "scheduling": {"nodeSelector": {"dialogue.dev/node-kind": "process"}},
            "replicas": 1,
            "variants": [{"name": "fp8", "quantization": "fp8"}],
            "rollout": {"targetVariant": "fp8", **rollout},
            "security": {"networkPolicy": False},
        },
    }


def model(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    return get_json(cluster, "dm", MODEL, "-n", namespace)


def deployments(cluster: LocalCluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = get_json(cluster, "deployments", "-n", namespace, "-l", f"dialogue.dev/model={MODEL}").get("items", [])
    return {d["metadata"]["labels"]["dialogue.dev/variant"]: d for d in items}


def events(cluster: LocalCluster, namespace: str) -> list[dict[str, Any]]:
    items = get_json(cluster, "events", "-n", namespace, "--field-selector", f"involvedObject.name={MODEL}")
    found = [e for e in items.get("items", []) if (e.get("involvedObject") or {}).get("kind") == "DialogueModel"]
    return sorted(found, key=lambda e: e.get("lastTimestamp") or "")


class Watcher:
    """Polls the DialogueModel in a thread and keeps every distinct (phase, rollout weights, variant weights)."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.seen: list[tuple[str, dict[str, int], dict[str, int]]] = []
        self._stop = threading.Event()
        self._args = (cluster, namespace)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        status = model(*self._args).get("status") or {}
        rollout = status.get("rollout") or {}
        sample = (
            str(rollout.get("phase", "")),
            dict(rollout.get("weights") or {}),
            {v["name"]: v.get("weight", 0) for v in status.get("variants") or []},
        )
        if not self.seen or self.seen[-1] != sample:
            self.seen.append(sample)
            step(f"phase {sample[0] or '-'}, rollout weights {sample[1]}, status.variants weights {sample[2]}")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(0.3)

    def stop(self) -> list[tuple[str, dict[str, int], dict[str, int]]]:
        """Everything seen, ending with the state now: the thread's last poll may have started (on a busy machine,
        seconds) before the last change the caller already saw, so one more poll follows the thread's end."""
        self._stop.set()
        self._thread.join(60)
        self._poll()
        return self.seen


def start_gateway(cluster: LocalCluster, namespace: str, procs: Procs) -> Proc:
    """The real gateway, discovering pods in `namespace` with the chart's gateway ServiceAccount and RBAC."""
    port = free_port("127.0.0.1")
    kubeconfig = str(chart_rbac_kubeconfig(cluster, namespace, procs.workdir))
    args = [sys.executable, "-m", "dialogue_runtime.gateway", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--kubeconfig", kubeconfig, "--namespace", namespace, "--log-level", "WARNING"]
    gateway = procs.spawn(args, f"http://127.0.0.1:{port}", "gateway")
    wait_http(gateway.url + "/healthz", timeout_s=60, proc=gateway.popen)
    return gateway


def phase(cluster: LocalCluster, namespace: str, wanted: str) -> dict[str, Any] | None:
    dm = model(cluster, namespace)
    return dm if ((dm.get("status") or {}).get("rollout") or {}).get("phase") == wanted else None


def test_online_quantized_variant_steps_up_and_is_promoted_without_a_failed_request(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    procs = Procs(tmp_path)
    watcher: Watcher | None = None
    load: ChatLoad | None = None
    try:
        rollout = {
            "steps": [50, 100],
            "stepDurationSeconds": 4,
            "analysis": {"minSamples": 5, "maxErrorRate": 0.05, "maxTtftP95Ratio": 20},
        }
        gateway = start_gateway(cluster, namespace, procs)
        step("applying the DialogueModel (sim, base + fp8, rollout 50 -> 100) and starting the operator")
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(dialogue_model(rollout)))
        watcher = Watcher(cluster, namespace)
        monkeypatch.setenv("DIALOGUE_OPERATOR_ROLLOUT_INTERVAL_S", "1")
        monkeypatch.setenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", gateway.url + "/metrics")
        start_operator([namespace])

        wait_for(lambda: "fp8" in deployments(cluster, namespace), timeout_s=60, what="the canary Deployment")
        wait_for(
            lambda: (model(cluster, namespace).get("status") or {}).get("readyReplicas", 0) >= 1,
            timeout_s=90,
            what="a Ready replica",
        )
        step("a replica is Ready: streaming load through the gateway (4 clients)")
        load = ChatLoad(gateway.url, [MODEL], clients_per_model=4, log=step)
        promoted = wait_for(lambda: phase(cluster, namespace, "Promoted"), timeout_s=150, what="phase Promoted")
        wait_for(lambda: "base" not in deployments(cluster, namespace), timeout_s=60, what="the base Deployment gone")
        statuses = [a.status for a in load.stop()]
        load = None
        seen = watcher.stop()
        watcher = None

        rollout_status = promoted["status"]["rollout"]
        step(f"promoted; last analysis {rollout_status.get('lastAnalysis')}; {len(statuses)} requests")
        assert rollout_status["stableVariant"] == "fp8"
        assert rollout_status["weights"] == {"fp8": 100}, rollout_status
        assert (rollout_status.get("lastAnalysis") or {}).get("verdict") == "Pass", rollout_status
        # The weights stepped up in status.rollout and reached status.variants (what the gateway routes by).
        rollout_steps = [w.get("fp8") for _, w, _ in seen if "fp8" in w]
        variant_steps = [v.get("fp8") for _, _, v in seen if "fp8" in v]
        for weights in (rollout_steps, variant_steps):
            assert [w for w in (0, 50, 100) if w in weights] == [0, 50, 100], seen
            assert weights == sorted(weights), seen
        final = model(cluster, namespace)["status"]
        assert [(v["name"], v["weight"]) for v in final["variants"]] == [("fp8", 100)], final["variants"]
        assert deployments(cluster, namespace)["fp8"]["status"].get("readyReplicas") == 1
        reasons = [e["reason"] for e in events(cluster, namespace)]
        step(f"events: {reasons}")
        for reason in ("RolloutStarted", "CanaryStarted", "StepStarted", "Promoted"):
            assert reason in reasons, reasons
        assert len(statuses) >= 10, f"only {len(statuses)} requests were served during the rollout"
        assert set(statuses) == {200}, f"failed requests during the rollout: {[s for s in statuses if s != 200]}"
    finally:
        if load is not None:
            load.stop()
        if watcher is not None:
            watcher.stop()
        procs.stop_all()


def _condition(dm: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (dm.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def test_canary_slower_than_the_threshold_is_rolled_back_with_the_ttft_numbers(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A variant whose engine prefills 100x slower (spec.variants[].engine.sim) fails the TTFT analysis at its
    first step: RolledBack with the measured ratio, the canary removed, the base serving every request."""
    procs = Procs(tmp_path)
    load: ChatLoad | None = None
    try:
        rollout = {"steps": [50, 100], "stepDurationSeconds": 60, "analysis": {"minSamples": 5, "maxTtftP95Ratio": 3}}
        manifest = dialogue_model(rollout)
        slow_engine = {"sim": {"prefillTokensPerSecond": 40}}  # base: 4000 tokens/s
        manifest["spec"]["variants"] = [{"name": "slow", "quantization": "fp8", "engine": slow_engine}]
        manifest["spec"]["rollout"]["targetVariant"] = "slow"
        gateway = start_gateway(cluster, namespace, procs)
        step("applying the DialogueModel (sim base + a 100x slower-prefill variant, rollout 50 -> 100)")
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
        monkeypatch.setenv("DIALOGUE_OPERATOR_ROLLOUT_INTERVAL_S", "1")
        monkeypatch.setenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", gateway.url + "/metrics")
        start_operator([namespace])
        wait_for(
            lambda: (model(cluster, namespace).get("status") or {}).get("readyReplicas", 0) >= 1,
            timeout_s=90,
            what="a Ready replica",
        )
        step("a replica is Ready: streaming load through the gateway (4 clients)")
        load = ChatLoad(gateway.url, [MODEL], clients_per_model=4, log=step)
        wait_for(lambda: phase(cluster, namespace, "RolledBack"), timeout_s=120, what="phase RolledBack")
        wait_for(lambda: "slow" not in deployments(cluster, namespace), timeout_s=60, what="the canary gone")
        time.sleep(1.0)  # the base goes on serving after the canary went
        statuses = [a.status for a in load.stop()]
        load = None

        dm = model(cluster, namespace)
        rolled_back = dm["status"]["rollout"]
        analysis = rolled_back.get("lastAnalysis") or {}
        step(f"rolled back: {rolled_back['reason']}: {rolled_back['message']}; {len(statuses)} requests")
        assert rolled_back["reason"] == "AnalysisFailed", rolled_back
        assert "TTFT p95" in rolled_back["message"] and "> maxTtftP95Ratio 3" in rolled_back["message"], rolled_back
        assert analysis.get("verdict") == "Fail" and analysis["ttftP95Ratio"] > 3, analysis
        assert analysis["canaryTtftP95S"] > analysis["stableTtftP95S"], analysis
        assert rolled_back["weights"] == {"base": 100}, rolled_back
        variant = _condition(dm, "VariantReady")
        assert (variant.get("status"), variant.get("reason")) == ("False", "RolledBack"), variant
        assert "slow rolled back, base serves: AnalysisFailed" in variant["message"], variant
        assert f"= {analysis['ttftP95Ratio']:.2f} > maxTtftP95Ratio" in variant["message"], variant
        assert _condition(dm, "Ready").get("status") == "True", dm["status"]["conditions"]
        assert [(v["name"], v["weight"]) for v in dm["status"]["variants"]] == [("base", 100)], dm["status"]
        warnings = [(e["type"], e["reason"]) for e in events(cluster, namespace)]
        assert ("Warning", "AnalysisFailed") in warnings, warnings
        assert len(statuses) >= 10, f"only {len(statuses)} requests were served"
        assert set(statuses) == {200}, f"failed requests during the rollback: {[s for s in statuses if s != 200]}"
    finally:
        if load is not None:
            load.stop()
        procs.stop_all()


def _engine_pids(pod_ip: str) -> list[int]:
    """The runtime engine processes the pod runner started for the pod with `pod_ip`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dialogue_runtime.engine" in argv and f"POD_IP={pod_ip}".encode() in environ:
            found.append(int(entry.name))
    return found


def _canary_pod(cluster: LocalCluster, namespace: str) -> dict[str, Any] | None:
    selector = f"dialogue.dev/model={MODEL},dialogue.dev/variant=fp8"
    pods = get_json(cluster, "pods", "-n", namespace, "-l", selector).get("items", [])
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live[0] if live else None


def test_crash_looping_canary_is_rolled_back_and_the_base_keeps_serving(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollout = {"steps": [50, 100], "stepDurationSeconds": 60, "analysis": {"minSamples": 5}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(dialogue_model(rollout)))
    monkeypatch.setenv("DIALOGUE_OPERATOR_ROLLOUT_INTERVAL_S", "1")
    monkeypatch.delenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", raising=False)
    start_operator([namespace])

    def base_ready() -> bool:
        dep = deployments(cluster, namespace).get("base") or {}
        return (dep.get("status") or {}).get("readyReplicas") == 1

    wait_for(base_ready, timeout_s=90, what="the base Deployment with its Ready replica")
    kills = 0
    deadline = time.monotonic() + 150
    while phase(cluster, namespace, "RolledBack") is None:
        assert time.monotonic() < deadline, f"no rollback after {kills} engine kills"
        pod = _canary_pod(cluster, namespace)
        ip = ((pod or {}).get("status") or {}).get("podIP")
        pids = _engine_pids(ip) if ip else []
        for pid in pids:  # the engine dies as an OOM kill would: exit 137, the pod runner restarts it
            os.kill(pid, signal.SIGKILL)
        if pids:
            kills += 1
            step(f"killed the canary's engine ({kills}): pids {pids}")
        time.sleep(0.5)

    rolled_back = model(cluster, namespace)["status"]
    rollout_status = rolled_back["rollout"]
    step(f"rolled back after {kills} kills: {rollout_status['reason']}: {rollout_status['message']}")
    assert rollout_status["reason"] == "CanaryCrashLooping", rollout_status
    assert "crash-looping" in rollout_status["message"], rollout_status
    assert rollout_status["weights"] == {"base": 100}, rollout_status
    wait_for(lambda: "fp8" not in deployments(cluster, namespace), timeout_s=60, what="the canary Deployment gone")
    assert base_ready(), deployments(cluster, namespace).get("base")
    final = model(cluster, namespace)["status"]
    assert [(v["name"], v["weight"]) for v in final["variants"]] == [("base", 100)], final["variants"]
    assert final["readyReplicas"] == 1, final
    warnings = [(e["type"], e["reason"]) for e in events(cluster, namespace)]
    assert ("Warning", "CanaryCrashLooping") in warnings, warnings


def _patch_rollout(cluster: LocalCluster, namespace: str, fields: dict[str, Any]) -> None:
    patch = yaml.safe_dump({"spec": {"rollout": fields}})
    cluster.kubectl("patch", "dm", MODEL, "-n", namespace, "--type", "merge", "-p", patch)


def _rollout(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    return dict((model(cluster, namespace).get("status") or {}).get("rollout") or {})


def test_pause_resume_and_abort_through_the_spec(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollout = {"steps": [50, 100], "stepDurationSeconds": 600, "analysis": {"minSamples": 5}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(dialogue_model(rollout)))
    monkeypatch.setenv("DIALOGUE_OPERATOR_ROLLOUT_INTERVAL_S", "1")
    monkeypatch.delenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", raising=False)
    start_operator([namespace])

    at_50 = wait_for(
        lambda: _rollout(cluster, namespace).get("weights") == {"base": 50, "fp8": 50},
        timeout_s=90,
        what="the Ready canary at step 1 (50 %)",
    )
    assert at_50
    step("canary at 50 %: pausing")
    _patch_rollout(cluster, namespace, {"paused": True})
    paused = wait_for(lambda: _rollout(cluster, namespace).get("phase") == "Paused", timeout_s=30, what="Paused")
    assert paused
    assert _rollout(cluster, namespace)["weights"] == {"base": 50, "fp8": 50}  # paused holds the split
    step("paused: resuming")
    _patch_rollout(cluster, namespace, {"paused": False})
    wait_for(lambda: _rollout(cluster, namespace).get("phase") == "Canary", timeout_s=30, what="Canary again")
    step("resumed: aborting")
    _patch_rollout(cluster, namespace, {"abort": True})
    wait_for(lambda: _rollout(cluster, namespace).get("phase") == "Aborted", timeout_s=30, what="Aborted")
    aborted = _rollout(cluster, namespace)
    assert aborted["reason"] == "RolloutAborted" and aborted["weights"] == {"base": 100}, aborted
    wait_for(lambda: "fp8" not in deployments(cluster, namespace), timeout_s=60, what="the canary Deployment gone")
    final = model(cluster, namespace)["status"]
    assert [(v["name"], v["weight"]) for v in final["variants"]] == [("base", 100)], final["variants"]
    assert final["readyReplicas"] == 1, final
    reasons = [e["reason"] for e in events(cluster, namespace)]
    step(f"events: {reasons}")
    for reason in ("StepStarted", "RolloutPaused", "RolloutResumed", "RolloutAborted"):
        assert reason in reasons, reasons


@pytest.mark.parametrize("verb", ["create", "get", "list", "watch", "patch", "delete"])
def test_the_operator_service_account_may_manage_jobs(
    cluster: LocalCluster,
    chart_release: Release,  # noqa: F811
    verb: str,
) -> None:
    who = f"system:serviceaccount:{chart_release.namespace}:{chart_release.service_account}"
    proc = cluster.kubectl("auth", "can-i", verb, "jobs.batch", "--as", who, "-n", "default", check=False)
    assert proc.stdout.strip() == "yes", f"{verb} jobs.batch: {proc.stdout}{proc.stderr}"


_SIM = {"kind": "sim"}
_HF = {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"}


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {"model": _HF, "variants": [{"name": "q", "quantization": "fp8", "qualityGate": {"minRecovery": 0.8}}]},
            "spec.variants[0].qualityGate",
            "needs a checkpoint",
        ),
        (
            {
                "model": _HF,
                "variants": [{"name": "q", "compression": {"scheme": "W8A8"}, "qualityGate": {"minRecovery": 0}}],
            },
            "spec.variants[0].qualityGate.minRecovery",
            "",
        ),
        (
            {"model": _HF, "variants": [{"name": "q", "quantization": "fp8", "engine": {"args": ["--port=1"]}}]},
            "spec.variants[0].engine.args",
            "--port",
        ),
        (
            {"model": _HF, "variants": [{"name": "q", "quantization": "fp8", "engine": {"sim": {"maxBatch": 2}}}]},
            "spec.variants",
            "engine.kind sim",
        ),
    ],
)
def test_variant_gate_and_engine_override_are_validated_at_the_door(
    cluster: LocalCluster,
    namespace: str,
    chart_release: Release,  # noqa: F811  (installs the CRD)
    spec: dict[str, Any],
    field: str,
    words: str,
) -> None:
    manifest = {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert proc.returncode != 0, "the API server must refuse it"
    assert field in proc.stderr and words in proc.stderr, proc.stderr
    gate = {"minRecovery": 0.85, "minAgreement": 0.5, "goldenSet": "pvc://store/gold.jsonl", "maxDialogues": 8}
    slow = {"args": ["--max-num-seqs=4"], "sim": {"prefillTokensPerSecond": 50}}
    good = {**spec, "engine": _SIM, "resources": {"gpus": 0}, "variants": [
        {"name": "w4", "compression": {"scheme": "W4A16_ASYM", "groupSize": 64}, "qualityGate": gate},
        {"name": "slow", "quantization": "fp8", "engine": slow},
    ]}  # fmt: skip
    manifest = {**manifest, "metadata": {"name": "good"}, "spec": good}
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert proc.returncode == 0, proc.stderr
