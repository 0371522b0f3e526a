"""Bad compressed variants refused on the local cluster, while each base keeps serving through the real gateway.

Four DialogueModels in one namespace, one operator (the chart's ServiceAccount), sim engines for the bases:
- `gated`: W4A16 group 64 on SmolLM2 (real llm-compressor, then the real quality gate on 8 golden dialogues):
  recovery (~0.66) is far below the default 0.9 threshold, the gate refuses the variant, the rollout ends
  Failed/QualityGateFailed with the numbers in status.rollout, the VariantReady condition and a Warning Event, and
  no canary Deployment is ever created;
- `nocal`: a W8A8 recipe whose calibration set (`pvc://models/calib/missing.jsonl`) does not exist: the Job
  fails at once, reason CalibrationSetMissing, the message naming the path as the spec writes it;
- `full`: FP8_DYNAMIC into a model store on a 48 MiB tmpfs (the artifact is ~160 MiB): the Job's free-space
  precheck fails StorageFull (need / free / where) before loading the model;
- `filled`: the same on a 224 MiB tmpfs (the precheck passes), which another writer fills while the Job loads
  the model: its save hits ENOSPC, and that is StorageFull too.
Each reason is the Job's own, in status.rollout, the VariantReady condition and a Warning Event.
Neither full volume keeps a half-written artifact (nor a serving link) a later run could take for a finished one.
None of them moves any traffic: status.rollout and status.variants never give the target a weight, and the
streamed load on the four bases sees no failed request. Real compression and evaluation: marked `compress`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
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
    bind_host_folder,
    chart_release,
    get_json,
    start_operator,
    wait_for,
)
from tests.integration.rollout.load import ChatLoad, statuses
from tests.integration.rollout.stores import require_compress_env
from tests.integration.rollout.test_rollout_cluster import STARTED, start_gateway, step

pytestmark = [pytest.mark.cluster, pytest.mark.compress, pytest.mark.timeout(900)]

GATED, NOCAL, FULL, FILLED = "gated", "nocal", "full", "filled"
NAMES = (GATED, NOCAL, FULL, FILLED)
TARGETS = {GATED: "w4a16", NOCAL: "w8a8", FULL: "fp8", FILLED: "fp8"}
# tmpfs model stores: 48 MiB cannot hold SmolLM2's FP8 artifact (~160 MiB); 224 MiB can, until it is filled.
VOLUME_MIB = {FULL: 48, FILLED: 224}
LEFT_FREE_MIB = 16  # what the other writer leaves free on the `filled` volume
MISSING_CALIBRATION = "pvc://models/calib/missing.jsonl"
FAST_CALIBRATION = {"numSamples": 8, "maxSequenceLength": 128}
GATE_DIALOGUES = 8
TERMINAL = ("Failed", "RolledBack", "Aborted", "Promoted")


def refused_model(name: str, claim: str, variant: dict[str, Any]) -> dict[str, Any]:
    """A sim base on the process-backed node (weights on `claim`) and a rollout to one compressed variant."""
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": f"pvc://{claim}/smollm2"},
            "engine": {"kind": "sim", "sim": {"decodeTokensPerSecond": 200, "maxDecodeTokensPerSecond": 2000}},
            "scheduling": {"nodeSelector": {"dialogue.dev/node-kind": "process"}},
            "replicas": 1,
            "variants": [variant],
            "rollout": {
                "targetVariant": variant["name"],
                "steps": [50, 100],
                "stepDurationSeconds": 4,
                "analysis": {"minSamples": 5, "maxErrorRate": 0.05, "maxTtftP95Ratio": 20},
            },
            "security": {"networkPolicy": False},
        },
    }


def models() -> list[dict[str, Any]]:
    w4a16 = {"scheme": "W4A16", "groupSize": 64, "calibration": {"dataset": "builtin:chat", **FAST_CALIBRATION}}
    gate = {"maxDialogues": GATE_DIALOGUES}  # the default threshold (minRecovery 0.9), on fewer golden dialogues
    w8a8 = {"scheme": "W8A8", "calibration": {"dataset": MISSING_CALIBRATION, **FAST_CALIBRATION}}
    return [
        refused_model(GATED, "models", {"name": TARGETS[GATED], "compression": w4a16, "qualityGate": gate}),
        refused_model(NOCAL, "models", {"name": TARGETS[NOCAL], "compression": w8a8}),
        refused_model(FULL, FULL, {"name": TARGETS[FULL], "compression": {"scheme": "FP8_DYNAMIC"}}),
        refused_model(FILLED, FILLED, {"name": TARGETS[FILLED], "compression": {"scheme": "FP8_DYNAMIC"}}),
    ]


def rollout_of(dm: dict[str, Any]) -> dict[str, Any]:
    return dict((dm.get("status") or {}).get("rollout") or {})


def model_events(cluster: LocalCluster, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the DialogueModel's Events."""
    items = get_json(cluster, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    found = [e for e in items.get("items", []) if (e.get("involvedObject") or {}).get("kind") == "DialogueModel"]
    found.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [(e["type"], e["reason"], e.get("message", "")) for e in found]


class KubectlWatch:
    """`kubectl get RESOURCE --watch` in the background: every object version the API server sent, so a Deployment
    created and deleted between two polls still shows up. The watch is restarted (with a fresh list) whenever the
    API server ends it, e.g. when another session re-applies the CRD and its storage is reinitialized."""

    def __init__(self, cluster: LocalCluster, namespace: str, resource: str, workdir: Path) -> None:
        self.argv = [str(cluster.bins.kubectl), f"--kubeconfig={cluster.kubeconfig}", "get", resource, "-n", namespace]
        self.argv += ["--watch", "--output-watch-events", "-o", "json"]
        self.out = workdir / f"watch-{resource}.json"
        self.err = workdir / f"watch-{resource}.err"
        self.restarts = 0
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_for(lambda: self._proc is not None, timeout_s=10, what=f"the {resource} watch")

    def _run(self) -> None:
        with self.out.open("ab") as out, self.err.open("ab") as err:
            while True:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._proc = subprocess.Popen(self.argv, stdout=out, stderr=err)
                self._proc.wait()
                if self._stop.is_set():
                    return
                self.restarts += 1
                step(f"{self.argv[3]} watch ended (exit {self._proc.returncode}); restarting it")
                time.sleep(0.5)

    def stop(self) -> list[dict[str, Any]]:
        """Ends the watch (by pid) and returns the objects it saw, in order."""
        with self._lock:
            self._stop.set()
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()
        self._thread.join(30)
        text, pos, objects = self.out.read_text(), 0, []
        decoder = json.JSONDecoder()
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                return objects
            try:
                event, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:  # a watch ended in the middle of an object; the next one relisted
                nxt = text.find('\n{\n    "type"', pos)
                if nxt < 0:
                    return objects
                pos = nxt
                continue
            objects.append(event["object"])


def answers(gateway: str, name: str) -> bool:
    """One streamed chat to `name` through the gateway answered 200."""
    body = {"model": name, "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        f"{gateway}/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            resp.read()
            return bool(resp.status == 200)
    except OSError:  # URLError and HTTPError (503 while the gateway has no ready endpoint yet) are OSErrors
        return False


def mount_tmpfs(folder: Path, size_mib: int) -> None:
    folder.mkdir(parents=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a {size_mib} MiB tmpfs at {folder} (the test runs as root): {proc.stderr}")


def unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)  # a pod still holds it


def traffic_to(seen: list[dict[str, Any]], name: str) -> list[tuple[str, int, int]]:
    """(phase, status.rollout weight, status.variants weight) of the target in every version of model `name` that
    gave it any weight."""
    moved = []
    for dm in seen:
        if dm["metadata"]["name"] != name:
            continue
        status = dm.get("status") or {}
        rollout_weight = int((rollout_of(dm).get("weights") or {}).get(TARGETS[name], 0))
        variant_weight = next(
            (v.get("weight", 0) for v in status.get("variants") or [] if v["name"] == TARGETS[name]), 0
        )
        if rollout_weight or variant_weight:
            moved.append((str(rollout_of(dm).get("phase")), rollout_weight, int(variant_weight)))
    return moved


def phases_of(seen: list[dict[str, Any]], name: str) -> list[str]:
    phases = [str(rollout_of(dm).get("phase") or "") for dm in seen if dm["metadata"]["name"] == name]
    return [p for i, p in enumerate(phases) if p and (i == 0 or phases[i - 1] != p)]


def variant_ready(dm: dict[str, Any]) -> dict[str, Any]:
    """The DialogueModel's VariantReady condition (the rollout target's step), {} when absent."""
    found = [c for c in (dm.get("status") or {}).get("conditions") or [] if c.get("type") == "VariantReady"]
    return dict(found[0]) if found else {}


def assert_nothing_moved(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    """The ended rollout left all traffic on the base, which still has its Ready replica; returns the model."""
    dm = get_json(cluster, "dm", name, "-n", namespace)
    rollout = rollout_of(dm)
    assert rollout["phase"] == "Failed", rollout
    assert rollout["stableVariant"] == "base" and rollout["weights"] == {"base": 100}, rollout
    variants = [(v["name"], v.get("weight")) for v in dm["status"].get("variants") or []]
    assert variants == [("base", 100)], variants
    assert dm["status"].get("readyReplicas") == 1, dm["status"]
    cond = variant_ready(dm)
    step(f"{name}: VariantReady {cond.get('status')}/{cond.get('reason')}: {cond.get('message')}")
    assert cond.get("status") == "False", cond
    return dm


def job_log(cluster: LocalCluster, namespace: str, name: str, component: str) -> str:
    """The log of model `name`'s compression or evaluation Job ('' before its pod runs)."""
    selector = f"dialogue.dev/model={name},app.kubernetes.io/component={component}"
    jobs = get_json(cluster, "jobs", "-n", namespace, "-l", selector).get("items", [])
    if not jobs:
        return ""
    proc = cluster.kubectl("logs", "-n", namespace, f"job/{jobs[0]['metadata']['name']}", check=False)
    return proc.stdout if proc.returncode == 0 else ""


def fill(volume: Path, leave_free_mib: int) -> int:
    """Another writer takes all but `leave_free_mib` of the volume; returns the bytes it wrote."""
    size = shutil.disk_usage(volume).free - leave_free_mib * 2**20
    chunk = b"\0" * 2**20
    with (volume / "other-writer.bin").open("wb") as out:
        for _ in range(size // len(chunk)):
            out.write(chunk)
    return size // len(chunk) * len(chunk)


def assert_no_half_written_artifact(volume: Path, name: str, other_bytes: int) -> None:
    """After a StorageFull, the store holds no partial output, no artifact folder and no serving link: only the
    per-model folder and its lock file (and what another writer put there)."""
    link = volume / "compressed" / f"{name}-{TARGETS[name]}"
    assert not link.exists() and not link.is_symlink(), f"a serving link was left at {link}"
    left = sorted(str(p.relative_to(volume)) for p in (volume / "compressed").rglob("*"))
    used_mib = (shutil.disk_usage(volume).used - other_bytes) / 2**20
    step(f"{name}: left in compressed/: {left}; {used_mib:.1f} MiB used besides the other writer's file")
    assert [p.name for p in (volume / "compressed").iterdir()] == [".artifacts"], left
    outputs = [p for p in (volume / "compressed" / ".artifacts").glob("*/*") if not p.name.startswith(".lock-")]
    assert outputs == [], f"half-written output left on the volume: {left}"
    assert used_mib < 4, f"{used_mib:.1f} MiB still used: the half-written output was not removed"


def assert_storage_full(cluster: LocalCluster, namespace: str, name: str) -> str:
    """StorageFull in status.rollout, the VariantReady condition and a Warning Event; returns the message."""
    dm = assert_nothing_moved(cluster, namespace, name)
    rollout, cond = rollout_of(dm), variant_ready(dm)
    assert "StorageFull" in rollout["message"] and "no space left" in rollout["message"].lower(), rollout
    assert rollout["reason"] == "StorageFull", rollout  # the Job's own reason, not a generic CompressionFailed
    assert cond["reason"] == rollout["reason"], cond
    assert "StorageFull" in cond["message"] and "no space left" in cond["message"].lower(), cond
    warnings = [(r, m) for t, r, m in model_events(cluster, namespace, name) if t == "Warning"]
    assert any(r == rollout["reason"] and "StorageFull" in m for r, m in warnings), warnings
    return str(rollout["message"])


def test_bad_variants_are_refused_and_the_bases_keep_serving(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    require_compress_env()
    store = tmp_path / "models"
    engine_env.link_smollm2(store)
    tmpfs = {name: tmp_path / name for name in VOLUME_MIB}
    procs = Procs(tmp_path)
    volumes: list[str] = []
    mounted: list[Path] = []
    watches: list[KubectlWatch] = []
    load: ChatLoad | None = None
    started = time.monotonic()
    try:
        for name, folder in tmpfs.items():
            mount_tmpfs(folder, VOLUME_MIB[name])
            mounted.append(folder)
            engine_env.link_smollm2(folder)  # symlinks only: the tmpfs is empty but for them
        volumes.append(
            bind_host_folder(cluster, namespace, "models", str(store), storage="2Gi", access_mode="ReadWriteMany")
        )
        for name, folder in tmpfs.items():
            size = f"{VOLUME_MIB[name]}Mi"
            volumes.append(
                bind_host_folder(cluster, namespace, name, str(folder), storage=size, access_mode="ReadWriteMany")
            )
        gateway = start_gateway(cluster, namespace, procs)
        watches = [KubectlWatch(cluster, namespace, kind, tmp_path) for kind in ("deployments", "dm")]
        for body in models():
            cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
        monkeypatch.setenv("DIALOGUE_OPERATOR_ROLLOUT_INTERVAL_S", "1")
        monkeypatch.delenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", raising=False)
        start_operator([namespace])
        step("operator started: waiting for the four bases to answer through the gateway")
        for name in NAMES:
            wait_for(lambda name=name: answers(gateway.url, name), timeout_s=120, what=f"{name}'s base answering 200")
        load = ChatLoad(gateway.url, list(NAMES), pause_s=0.25, log=step)
        step(f"bases serving after {time.monotonic() - started:.0f} s: load on, waiting for the refusals")

        done: dict[str, float] = {}
        phases: dict[str, str] = {}
        filled_bytes = 0
        deadline = time.monotonic() + 600
        while len(done) < len(NAMES):
            assert time.monotonic() < deadline, f"rollouts still running after 600 s (ended: {sorted(done)})"
            for dm in get_json(cluster, "dm", "-n", namespace).get("items", []):
                name, rollout = dm["metadata"]["name"], rollout_of(dm)
                if rollout.get("phase") and rollout["phase"] != phases.get(name):
                    phases[name] = rollout["phase"]
                    step(f"{name}: {rollout['phase']} after {time.monotonic() - started:.0f} s")
                if name not in done and rollout.get("phase") in TERMINAL:
                    done[name] = time.monotonic() - started
                    step(f"{name} ended: {rollout.get('reason')}: {rollout.get('message')}")
            if not filled_bytes and FILLED not in done:
                log = job_log(cluster, namespace, FILLED, "compress")
                if "compress: load" in log:  # the Job checked the volume (the artifact fitted) and now works
                    filled_bytes = fill(tmpfs[FILLED], LEFT_FREE_MIB)
                    step(f"{FILLED}: the Job is loading the base; another writer took {filled_bytes / 2**20:.0f} MiB")
            time.sleep(1)
        time.sleep(3)  # the bases keep serving after the last refusal
        served = load.stop()
        load = None
        deployments_seen = watches[0].stop()
        models_seen = watches[1].stop()
        watches = []

        for a in served:
            if a.status != 200:
                step(f"FAILED request at {a.at_s - STARTED:.1f} s: {a.model} answered {a.status}")
        for name in NAMES:
            codes = statuses(served, name)
            step(f"{name}: {len(codes)} requests to the base, statuses {sorted(set(codes))}")
            assert len(codes) >= 5, f"only {len(codes)} requests to {name} during the test"
            assert set(codes) == {200}, f"failed requests to {name}'s base: {[c for c in codes if c != 200]}"
        labels = [d["metadata"].get("labels") or {} for d in deployments_seen]
        created = {(lb.get("dialogue.dev/model"), lb.get("dialogue.dev/variant")) for lb in labels}
        assert created == {(n, "base") for n in NAMES}, f"Deployments ever created: {created}"
        for name in NAMES:
            assert traffic_to(models_seen, name) == [], f"{name}'s target got traffic: {traffic_to(models_seen, name)}"

        # The missing calibration set: the Job's reason and the path, quoted; nothing was compressed.
        dm = assert_nothing_moved(cluster, namespace, NOCAL)
        rollout, cond = rollout_of(dm), variant_ready(dm)
        assert rollout["reason"] == "CalibrationSetMissing", rollout
        assert f"calibration set not found: {MISSING_CALIBRATION}" in rollout["message"], rollout  # as the spec says
        assert cond["reason"] == "CalibrationSetMissing", cond
        assert MISSING_CALIBRATION in cond["message"], cond
        assert rollout["compression"]["state"] == "Failed", rollout
        warnings = [(r, m) for t, r, m in model_events(cluster, namespace, NOCAL) if t == "Warning"]
        assert any(r == "CalibrationSetMissing" and MISSING_CALIBRATION in m for r, m in warnings), warnings
        assert phases_of(models_seen, NOCAL)[-2:] == ["Compressing", "Failed"], phases_of(models_seen, NOCAL)
        assert not (store / "compressed" / f"{NOCAL}-{TARGETS[NOCAL]}").exists()

        # The volumes too small for the artifact: StorageFull, and nothing left that looks like an artifact.
        messages = {name: assert_storage_full(cluster, namespace, name) for name in (FULL, FILLED)}
        for name in (FULL, FILLED):
            assert phases_of(models_seen, name)[-2:] == ["Compressing", "Failed"], phases_of(models_seen, name)
        # Too small from the start: the Job's free-space precheck refuses before loading the model.
        assert "need ~" in messages[FULL] and "the base model was not loaded" in messages[FULL], messages[FULL]
        assert filled_bytes, (
            f"the {FILLED} Job never reached its load step: {job_log(cluster, namespace, FILLED, 'compress')}"
        )
        # Filled during the run, past the precheck: the Job's save hits ENOSPC, and that is StorageFull too.
        assert "saving the compressed model" in messages[FILLED], messages[FILLED]
        assert "No space left on device" in messages[FILLED], messages[FILLED]
        assert_no_half_written_artifact(tmpfs[FULL], FULL, 0)
        assert_no_half_written_artifact(tmpfs[FILLED], FILLED, filled_bytes)

        # The quality gate refused W4A16 g64 with its numbers; the artifact was made but never served.
        dm = assert_nothing_moved(cluster, namespace, GATED)
        rollout, cond = rollout_of(dm), variant_ready(dm)
        evaluation = rollout["evaluation"]
        step(f"{GATED}: gate {evaluation}")
        assert rollout["reason"] == "QualityGateFailed", rollout
        assert evaluation["eligible"] is False and evaluation["threshold"] == 0.9, evaluation
        assert evaluation["recovery"] < evaluation["threshold"], evaluation
        assert f"recovery {evaluation['recovery']}" in rollout["message"], rollout
        assert "threshold 0.9" in rollout["message"], rollout
        assert cond["reason"] == "QualityGateFailed", cond
        assert f"recovery {evaluation['recovery']}" in cond["message"] and "threshold 0.9" in cond["message"], cond
        warnings = [(r, m) for t, r, m in model_events(cluster, namespace, GATED) if t == "Warning"]
        assert any(r == "QualityGateFailed" and f"recovery {evaluation['recovery']}" in m for r, m in warnings), (
            warnings
        )
        assert phases_of(models_seen, GATED)[-3:] == ["Compressing", "Evaluating", "Failed"], phases_of(
            models_seen, GATED
        )
        assert (store / "compressed" / f"{GATED}-{TARGETS[GATED]}").is_symlink()  # kept: a re-apply reuses it
        step("ended: " + ", ".join(f"{name} {done[name]:.0f} s" for name in NAMES))
    finally:
        if load is not None:
            load.stop()
        for watch in watches:
            watch.stop()
        procs.stop_all()
        for name in NAMES:  # the pods go before the tmpfs volumes do
            cluster.kubectl("delete", "dm", name, "-n", namespace, "--ignore-not-found", "--wait=false", check=False)
        cluster.kubectl("delete", "pvc", "--all", "-n", namespace, "--wait=false", check=False)
        for volume in volumes:
            cluster.kubectl("delete", "pv", volume, "--ignore-not-found", "--wait=false", check=False)
        for folder in mounted:
            unmount(folder)
