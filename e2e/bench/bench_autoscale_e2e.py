"""Autoscaling end to end on the local cluster: time to scale up under load, to shrink, to reach zero and to answer
from zero, with sim engines on the process-backed node, the real operator and the real gateway; and, side by side
at zero, a gateway that holds the request (ours) vs one that answers 503 at once while the client retries."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import yaml

from e2e.autoscale_e2e import (
    CLIENTS,
    MAX_REPLICAS,
    MAX_TOKENS,
    MODEL,
    POLICY,
    SCALE_TO_ZERO_AFTER_S,
    Numbers,
    chat,
    dialogue_model,
    gateway_knows,
    run_scenario,
    step,
    wait_gone,
)
from e2e.cluster.harness import LocalCluster
from e2e.cluster.procs import ProcessGroup, free_port, wait_http
from e2e.cluster.sharing import shared_cluster

TITLE = "Autoscaling end to end: up, down, to and from zero on the local cluster; hold vs 503 at zero"
ROOT = Path(__file__).resolve().parents[2]
RETRY_EVERY_S = 1.0


class _Procs(ProcessGroup):
    """The gateways and the operator of this benchmark, each stopped by pid at the end."""

    def gateway(self, cluster: LocalCluster, namespace: str, hold_timeout_s: float) -> str:
        port = free_port()
        args = [sys.executable, "-m", "dialogue_runtime.gateway", "--host", "127.0.0.1", "--port", str(port)]
        args += ["--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace, "--log-level", "WARNING"]
        args += ["--hold-timeout-s", str(hold_timeout_s)]
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", timeout_s=60, proc=self.spawn(f"gateway-hold-{hold_timeout_s:g}", args))
        return url

    def operator(self, cluster: LocalCluster, namespace: str, gateway_urls: list[str]) -> None:
        port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "DIALOGUE_OPERATOR_NAMESPACES": namespace,
            "DIALOGUE_OPERATOR_RESYNC_INTERVAL_S": "2",
            "DIALOGUE_OPERATOR_METRICS_PORT": str(port),
            "DIALOGUE_OPERATOR_BIND_ADDRESS": "127.0.0.1",
            "DIALOGUE_OPERATOR_HEALTH_PORT": "0",
            "DIALOGUE_OPERATOR_LOG_LEVEL": "WARNING",
            "DIALOGUE_OPERATOR_AUTOSCALE_INTERVAL_S": "1",
            "DIALOGUE_OPERATOR_AUTOSCALE_POLICY": POLICY,
            "DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS": ",".join(u + "/metrics" for u in gateway_urls),
        }
        proc = self.spawn("operator", [sys.executable, "-m", "dialogue_operator"], env)
        wait_http(f"http://127.0.0.1:{port}/metrics", timeout_s=60, proc=proc)


async def _retry_until_served(gateway_url: str, timeout_s: float) -> tuple[float, list[int]]:
    """A client without holding: retry every RETRY_EVERY_S until a 200; (seconds to the 200, statuses seen)."""
    statuses: list[int] = []
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while time.monotonic() - started < timeout_s:
            outcome = await chat(session, gateway_url, MODEL, f"retry-{len(statuses)}", MAX_TOKENS)
            statuses.append(outcome.status)
            if outcome.status == 200:
                break
            await asyncio.sleep(RETRY_EVERY_S)
    return time.monotonic() - started, statuses


def _report(numbers: Numbers, retry_s: float, retry_statuses: list[int], load_avg: str) -> str:
    errors = sum(1 for s in retry_statuses if s != 200)
    codes = sorted({s for s in retry_statuses if s != 200})
    return f"""Load: a sim-engine DialogueModel (`engine.kind: sim`, 2 sequences per replica at 20 tok/s, {MAX_TOKENS}
output tokens a request) on the process-backed node, autoscaling 0..{MAX_REPLICAS} at 2 in-flight requests per
replica, `scaleToZeroAfterSeconds: {SCALE_TO_ZERO_AFTER_S}`; the operator ticks every 1 s with shortened windows
(`{POLICY}`); {CLIENTS} conversations in a closed loop through the gateway. The runtime pods' startup probe checks every
2 s, so a new sim replica is Ready within seconds of its start. Machine load average at the start: {load_avg}.

| phase | measured |
|---|---|
| first request at zero, held until a replica is Ready | answered after {numbers.first_from_zero_s:.1f} s |
| load starts -> {MAX_REPLICAS} replicas Ready | {numbers.scale_up_s:.1f} s |
| requests during the load | {numbers.requests_under_load}, all HTTP 200 |
| load ends -> 1 replica | {numbers.shrink_to_one_s:.1f} s |
| load ends -> 0 replicas (idle period {SCALE_TO_ZERO_AFTER_S} s) | {numbers.to_zero_s:.1f} s |
| request at zero again, held | answered after {numbers.second_from_zero_s:.1f} s |
| HTTP statuses over the scenario | {numbers.statuses} |

At zero, side by side in this run (same model, same operator; the second gateway runs with `--hold-timeout-s 0`,
i.e. answers 503 at once as most peers do, and its client retries every {RETRY_EVERY_S:g} s):

| gateway at zero | client's time to its answer | failed responses the client saw |
|---|---|---|
| holds the request (ours) | {numbers.second_from_zero_s:.1f} s | 0 |
| answers 503, client retries | {retry_s:.1f} s | {errors} (HTTP {", ".join(map(str, codes)) or "-"}) |
"""


def run() -> str:
    namespace = f"bench-autoscale-{uuid.uuid4().hex[:5]}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-autoscale-"))
    procs = _Procs(workdir, cwd=ROOT)
    with shared_cluster(LocalCluster(out=lambda line: print(f"[cluster] {line}", flush=True))) as cluster:
        try:
            load_avg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            cluster.kubectl(
                "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "charts/dialogue-operator/crds")
            )
            cluster.kubectl("create", "namespace", namespace)
            cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(dialogue_model()))
            holding = procs.gateway(cluster, namespace, hold_timeout_s=180)
            no_hold = procs.gateway(cluster, namespace, hold_timeout_s=0)
            procs.operator(cluster, namespace, [holding, no_hold])
            numbers, timeline = run_scenario(cluster, namespace, holding)

            step("waiting for zero again, then a client through the gateway that answers 503 at zero")
            timeline.wait(
                "scale to zero again",
                lambda spec, ready, desired, reason: spec == 0 and desired == 0,
                timeout_s=SCALE_TO_ZERO_AFTER_S + 90,
            )
            wait_gone(cluster, namespace, holding)
            deadline = time.monotonic() + 30
            while not gateway_knows(no_hold, MODEL) and time.monotonic() < deadline:
                time.sleep(0.3)
            retry_s, retry_statuses = asyncio.run(_retry_until_served(no_hold, timeout_s=180))
            if retry_statuses[-1:] != [200]:
                raise AssertionError(f"the retrying client was never served: {retry_statuses}")
            return _report(numbers, retry_s, retry_statuses, load_avg)
        finally:
            procs.stop_all()
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)
