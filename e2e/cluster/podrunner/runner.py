"""The runner: registers the node, watches the pods bound to it, gives each a PodWorker, heartbeats, serves
logs, and on shutdown stops every pod's processes before it exits (e2e layer)."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.cluster.podrunner.container import kill_tagged
from e2e.cluster.podrunner.context import RunnerContext
from e2e.cluster.podrunner.ipam import PodIPAllocator
from e2e.cluster.podrunner.kubeapi import ApiError, KubeClient, load_kubeconfig
from e2e.cluster.podrunner.logserver import LogServer
from e2e.cluster.podrunner.node import NodeShape, heartbeat, register
from e2e.cluster.podrunner.podworker import PodWorker

log = logging.getLogger("podrunner")

HEARTBEAT_S = 10.0
WATCH_TIMEOUT_S = 240.0


class RunnerAlreadyRunning(RuntimeError):
    """Another runner holds this node's state directory."""


@dataclass(frozen=True)
class RunnerConfig:
    kubeconfig: Path
    node_name: str
    pod_cidr: str
    state_dir: Path
    gpus: int = 0
    gpu_product: str = "NVIDIA-L4"
    cpu: str = "32"
    memory: str = "256Gi"
    max_pods: int = 110
    unschedulable: bool = False
    backoff_cap_s: float = 300.0
    shutdown_grace_s: float = 10.0
    repo_root: Path = Path(__file__).resolve().parents[3]
    serve_logs: bool = True


class Runner:
    """One process-backed node. `run()` blocks until `stop()` (e.g. on SIGTERM), then cleans up."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        creds = load_kubeconfig(config.kubeconfig, config.state_dir / "credentials")
        self.client = KubeClient(creds)
        host, port = creds.host_port
        self.shape = NodeShape(
            name=config.node_name,
            pod_cidr=config.pod_cidr,
            gpus=config.gpus,
            gpu_product=config.gpu_product,
            cpu=config.cpu,
            memory=config.memory,
            max_pods=config.max_pods,
            unschedulable=config.unschedulable,
        )
        self.ctx = RunnerContext(
            client=self.client,
            node_name=config.node_name,
            state_dir=config.state_dir,
            repo_root=config.repo_root,
            api_host=host,
            api_port=port,
            allocatable=self.shape.capacity(),
            backoff_cap_s=config.backoff_cap_s,
            shutdown_grace_s=config.shutdown_grace_s,
            ipam=PodIPAllocator(config.pod_cidr),
        )
        self.workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()  # uids whose worker ended: late watch events must not revive them
        self._workers_lock = threading.Lock()
        self._stop = threading.Event()
        self.log_server: LogServer | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        # One runner per node: a second one would start every pod twice.
        self._instance_lock = (self.config.state_dir / "runner.lock").open("a")
        try:
            fcntl.flock(self._instance_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunnerAlreadyRunning(
                f"another pod runner already serves node {self.config.node_name} from {self.config.state_dir}"
            ) from exc
        if self.config.serve_logs:
            self.log_server = LogServer(self.ctx, self._find_pod_dir, self._container_running, self._waiting_reason)
            self.log_server.start()
            self.shape = NodeShape(**{**vars(self.shape), "kubelet_port": self.log_server.port})
        # What a runner killed earlier on this node left behind: processes, then mount points.
        leftovers = kill_tagged(self.ctx.tag_prefix)
        if leftovers:
            log.warning("killed %d process(es) left running by an earlier runner of this node", leftovers)
        self.ctx.mount_points.sweep()
        self._register_with_retries()
        log.info("node %s registered (podCIDR %s, %d GPUs)", self.shape.name, self.shape.pod_cidr, self.shape.gpus)
        threads = [
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self._watch_loop, name="watch", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            while not self._stop.wait(1.0):
                self._reap()
        finally:
            self._shutdown()

    def _register_with_retries(self, timeout_s: float = 60.0) -> None:
        """Register the node, waiting out an API server that is still starting (unreachable or 5xx)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                register(self.client, self.shape)
                return
            except ApiError as exc:
                if (exc.status != 0 and exc.status < 500) or time.monotonic() > deadline or self._stop.is_set():
                    raise
                log.info("API server not ready (%s); retrying", exc)
                self._stop.wait(1.0)

    def _shutdown(self) -> None:
        log.info("shutting down: stopping every pod's processes")
        self.ctx.shutting_down.set()
        with self._workers_lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.wake()
        deadline = time.monotonic() + self.config.shutdown_grace_s + 15.0
        for worker in workers:
            worker.join(max(deadline - time.monotonic(), 0.1))
        alive = [w.key for w in workers if w.is_alive()]
        if alive:
            log.error("pods still stopping at exit: %s", ", ".join(alive))
        kill_tagged(self.ctx.tag_prefix)  # nothing of this node outlives its runner
        if self.log_server is not None:
            self.log_server.stop()
        self.ctx.probe_pool.shutdown(wait=False, cancel_futures=True)

    def _reap(self) -> None:
        with self._workers_lock:
            for uid in [u for u, w in self.workers.items() if not w.is_alive()]:
                del self.workers[uid]
                self._finished.add(uid)

    def _find_pod_dir(self, namespace: str, name: str) -> Path | None:
        with self._workers_lock:
            for worker in self.workers.values():
                if worker.key == f"{namespace}/{name}":
                    return worker.pod_dir
        pods = self.config.state_dir / "pods"
        matches = sorted(pods.glob(f"{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime) if pods.is_dir() else []
        return matches[-1] if matches else None

    def _container_running(self, namespace: str, name: str, container: str) -> bool:
        with self._workers_lock:
            workers = [w for w in self.workers.values() if w.key == f"{namespace}/{name}"]
        return any(w.container_running(container) for w in workers)

    def _waiting_reason(self, namespace: str, name: str, container: str) -> str | None:
        with self._workers_lock:
            workers = [w for w in self.workers.values() if w.key == f"{namespace}/{name}"]
        return next((r for w in workers if (r := w.waiting_reason(container))), None)

    # ---- threads -------------------------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                heartbeat(self.client, self.shape)
            except ApiError as exc:
                log.warning("heartbeat failed: %s", exc)
                if exc.status == 404:
                    try:
                        register(self.client, self.shape)
                    except ApiError as again:
                        log.warning("re-registering the node failed: %s", again)
            except Exception:  # the heartbeat must outlive any surprise, or the node goes NotReady
                log.exception("heartbeat failed unexpectedly")

    def _watch_loop(self) -> None:
        path = "/api/v1/pods"
        selector = {"fieldSelector": f"spec.nodeName={self.config.node_name}"}
        while not self._stop.is_set():
            try:
                listing = self.client.get(path, selector)
                seen = set()
                for pod in listing.get("items") or []:
                    seen.add(pod["metadata"]["uid"])
                    self._on_pod(pod)
                self._forget_missing(seen)
                version = str(listing["metadata"]["resourceVersion"])
                while not self._stop.is_set():
                    for event in self.client.watch(path, {**selector, "resourceVersion": version}, WATCH_TIMEOUT_S):
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            _raise_watch_error(obj)
                        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                        if kind in ("ADDED", "MODIFIED"):
                            self._on_pod(obj)
                        elif kind == "DELETED":
                            self._on_deleted(obj)
                        if self._stop.is_set():
                            return
            except ApiError as exc:
                if exc.status != 410:
                    log.warning("pod watch: %s; listing again", exc)
                    self._stop.wait(1.0)
            except Exception:  # the watch must survive anything: log it and list again
                log.exception("pod watch failed; listing again")
                self._stop.wait(1.0)

    def _on_pod(self, pod: Mapping[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._workers_lock:
            worker = self.workers.get(uid)
            if worker is not None:
                worker.update(pod)
                return
            if self.ctx.shutting_down.is_set() or uid in self._finished:
                return
            worker = PodWorker(self.ctx, pod, os.environ)
            self.workers[uid] = worker
        worker.start()

    def _on_deleted(self, pod: Mapping[str, Any]) -> None:
        with self._workers_lock:
            worker = self.workers.get(pod["metadata"]["uid"])
        if worker is not None:
            worker.update(pod)  # the last state: a forced delete carries deletionGracePeriodSeconds 0
            worker.object_deleted()

    def _forget_missing(self, seen: set[str]) -> None:
        with self._workers_lock:
            missing = [w for uid, w in self.workers.items() if uid not in seen]
        for worker in missing:
            worker.object_deleted()


def _raise_watch_error(status: Mapping[str, Any]) -> None:
    raise ApiError(int(status.get("code") or 500), str(status.get("message")), "pod watch")
