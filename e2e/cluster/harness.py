"""`LocalCluster`: brings the local control plane, KWOK GPU nodes and process-backed nodes up and down (e2e layer).

`up` starts etcd (data on tmpfs), kube-apiserver, kube-controller-manager, kube-scheduler, kwok and the pod
runners, each with a pidfile under `run/` and a log under `logs/`, printing every step with its duration. A failure
stops what was started and raises ClusterError carrying the failing component's log tail. `down` stops every
process by pid and removes the tmpfs data.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from e2e import images
from e2e.cluster import components as comp
from e2e.cluster import procs
from e2e.cluster.api import Api
from e2e.cluster.build import Binaries, binaries
from e2e.cluster.layout import ClusterInfo, Layout, Ports, default_port_base, default_state_dir
from e2e.cluster.nodes import NODE_KIND_LABEL, kwok_gpu_node, kwok_node_name, node_is_ready
from e2e.cluster.procs import ClusterError, PidFile
from e2e.cluster.realnode import RealNode

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
PODRUNNER_MODULE = Path(__file__).resolve().parent / "podrunner" / "__main__.py"
DEFAULT_KWOK_NODES = 50


class LocalCluster:
    """One local cluster, identified by its state directory (default `.cluster/`)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        port_base: int | None = None,
        kwok_nodes: int = DEFAULT_KWOK_NODES,
        process_nodes: bool = True,
        real_node: bool = True,
        out: Callable[[str], None] | None = None,
        bins: Binaries | None = None,
    ) -> None:
        self.layout = Layout((state_dir or default_state_dir()).resolve())
        recorded = ClusterInfo.load(self.layout.info_file)
        if port_base is None:
            port_base = recorded.port_base if recorded else default_port_base()
        self.ports = Ports.from_base(port_base)
        self.kwok_nodes = kwok_nodes
        self.process_nodes = process_nodes
        self.real_node = real_node
        self._out = out or (lambda line: print(line, flush=True))
        self._bins = bins  # None: the cached builds of build.py

    # ---- what users and tests read -------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.layout.state_dir

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def api_server_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def bins(self) -> Binaries:
        if self._bins is None:
            self._bins = binaries()
        return self._bins

    def node(self) -> RealNode:
        """The real node (kubelet + containerd) of this cluster, started by `up` unless `real_node=False`."""
        return RealNode(self.layout, self.ports, kubelet=self.bins.kubelet, kubectl=self.kubectl, out=self._out)

    def api(self) -> Api:
        return Api(self.ports.apiserver, self.layout.pki_dir / "ca.crt", self.layout.pair("admin"))

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout_s: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Runs the cluster's own kubectl (v1.35) against this cluster; raises ClusterError when `check` fails."""
        argv = [str(self.bins.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout_s)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def components(self) -> list[str]:
        names = list(CONTROL_PLANE)
        names += [f"podrunner-{n}" for n in comp.PROCESS_NODES]
        names += self.node().components()
        return names

    def pid(self, component: str) -> int | None:
        return self._pidfile(component).pid()

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each running component (its main process)."""
        return {c: procs.rss_bytes(pid) for c in self.components() if (pid := self.pid(c)) is not None}

    def log_tail(self, component: str, lines: int = 30) -> str:
        return procs.log_tail(self.layout.log(component), lines)

    def is_up(self, *, patience_s: float = 30.0) -> bool:
        """Whether the API server runs and is ready; a running one gets `patience_s` to answer (busy machine)."""
        if self.pid("kube-apiserver") is None:
            return False
        api = self.api()
        deadline = time.monotonic() + patience_s
        while not api.ok("/readyz", timeout_s=5.0):
            if time.monotonic() > deadline or self.pid("kube-apiserver") is None:
                return False
            time.sleep(0.5)
        return True

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def up(self) -> bool:
        """Starts the cluster; returns False (and changes nothing) when it is already up."""
        if self.is_up():
            self._out(f"cluster already up ({self.api_server_url}); kubeconfig: {self.kubeconfig}")
            return False
        if any(self.pid(c) is not None for c in self.components()):
            self._out("cluster: stopping the leftovers of an earlier, incomplete start")
            self.down(quiet=True)
        missing = self.bins.missing()
        if missing:
            raise ClusterError(
                f"cluster binaries are missing ({', '.join(missing)}): run `python -m e2e.setup cluster` first"
            )
        for component, port in self.ports.by_component().items():
            procs.ensure_port_free(port, component=component)
        started = time.monotonic()
        try:
            self._up()
        except BaseException:
            self._out("cluster: start failed; stopping what was started")
            self.down(quiet=True)
            raise
        self._out(f"cluster up in {time.monotonic() - started:.1f} s; kubeconfig: {self.kubeconfig}")
        return True

    def _up(self) -> None:
        layout, bins, ports = self.layout, self.bins, self.ports
        for d in (layout.state_dir, layout.log_dir, layout.run_dir, layout.nodes_dir):
            d.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(layout.tmpfs_dir, ignore_errors=True)
        layout.tmpfs_dir.mkdir(parents=True)
        ClusterInfo(
            port_base=ports.apiserver,
            kwok_nodes=self.kwok_nodes,
            process_nodes=list(comp.PROCESS_NODES) if self.process_nodes else [],
            real_node=self.real_node,
            started_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        ).save(layout.info_file)
        with self._step("certificates and kubeconfigs written"):
            comp.write_pki(layout, ports)
        ca = layout.pki_dir / "ca.crt"
        with self._step("etcd ready"):
            self._start("etcd", comp.etcd_argv(bins, layout, ports))
            etcd = Api(ports.etcd_client, ca, layout.pair("etcd"))
            self._wait("etcd", lambda: etcd.ok("/health"), timeout_s=30)
        with self._step("kube-apiserver ready"):
            self._start("kube-apiserver", comp.apiserver_argv(bins, layout, ports))
            api = self.api()
            self._wait("kube-apiserver", lambda: api.ok("/readyz"), timeout_s=90)
        with self._step("kube-controller-manager and kube-scheduler ready"):
            self._start("kube-controller-manager", comp.controller_manager_argv(bins, layout, ports))
            self._start("kube-scheduler", comp.scheduler_argv(bins, layout, ports))
            cm = Api(ports.controller_manager, ca)
            sched = Api(ports.scheduler, ca)
            self._wait("kube-controller-manager", lambda: cm.ok("/healthz"), timeout_s=60)
            self._wait("kube-scheduler", lambda: sched.ok("/healthz"), timeout_s=60)
        with self._step(f"kwok running, {self.kwok_nodes} KWOK GPU nodes Ready"):
            self._start("kwok", comp.kwok_argv(bins, layout, ports))
            kwok = Api(ports.kwok, ca)
            self._wait("kwok", lambda: kwok.ok("/healthz"), timeout_s=30)
            self.add_kwok_nodes(self.kwok_nodes)
            self.wait_nodes_ready("kwok", self.kwok_nodes, timeout_s=60 + self.kwok_nodes * 0.3)
        with self._step("default ServiceAccount created"):
            self._wait(
                "kube-controller-manager",
                lambda: self.api().ok("/api/v1/namespaces/default/serviceaccounts/default"),
                timeout_s=60,
            )
        if self.process_nodes:
            self._start_process_nodes()
        if self.real_node:
            self._start_real_node()

    def _start_real_node(self) -> None:
        with self._step("images for the real node ready"):
            built = images.node_images(out=self._out)
        with self._step("real node Ready"):
            self.node().up(sandbox_image=built.sandbox_ref, archives=built.archives, wait=self._wait)

    def _start_process_nodes(self) -> None:
        if not PODRUNNER_MODULE.is_file():
            self._out("WARNING: e2e/cluster/podrunner is not there yet; no process-backed nodes started")
            return
        with self._step(f"process-backed nodes Ready ({', '.join(comp.PROCESS_NODES)})"):
            for node in comp.PROCESS_NODES:
                self._start(f"podrunner-{node}", comp.podrunner_argv(self.layout, node, self.ports.apiserver))
            self.wait_nodes_ready("process", len(comp.PROCESS_NODES), timeout_s=60)

    def down(self, *, quiet: bool = False) -> None:
        """Stops every component by pid (SIGTERM, wait, SIGKILL) and removes etcd's tmpfs data."""
        self.node().down()  # first: its containers, mounts and network namespace, then the processes below
        for component in reversed(self.components()):
            pidfile = self._pidfile(component)
            started = time.monotonic()
            grace_s = 40.0 if component.startswith("podrunner") else 10.0
            if procs.stop(pidfile, grace_s=grace_s) and not quiet:
                self._out(f"{component} stopped ({time.monotonic() - started:.1f} s)")
        shutil.rmtree(self.layout.tmpfs_dir, ignore_errors=True)
        shutil.rmtree(self.layout.nodes_dir, ignore_errors=True)  # pod state of a cluster that is gone
        self.layout.info_file.unlink(missing_ok=True)
        if not quiet:
            self._out("cluster down")

    def status(self) -> str:
        lines = [f"state dir: {self.state_dir}", f"API server: {self.api_server_url}"]
        for component in self.components():
            pid = self.pid(component)
            lines.append(f"  {component:<28} {'pid ' + str(pid) if pid else '-':<12} {'alive' if pid else 'stopped'}")
        if self.is_up():
            nodes = self.api().get_json("/api/v1/nodes").get("items", [])
            ready = sum(node_is_ready(n) for n in nodes)
            lines.append(f"nodes: {ready}/{len(nodes)} Ready")
            lines.append(f"kubeconfig: {self.kubeconfig}")
        else:
            lines.append("cluster is not up (python -m e2e.cluster up)")
        return "\n".join(lines)

    # ---- nodes ---------------------------------------------------------------------------------------------
    def add_kwok_nodes(self, total: int, *, start: int = 0) -> None:
        """Creates KWOK GPU nodes `start`..`total-1` (existing ones are kept)."""
        api = self.api()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: api.create("/api/v1/nodes", kwok_gpu_node(i)), range(start, total)))

    def ready_nodes(self, kind: str) -> int:
        nodes = self.api().get_json(f"/api/v1/nodes?labelSelector={NODE_KIND_LABEL}%3D{kind}", timeout_s=60)
        return sum(node_is_ready(n) for n in nodes.get("items", []))

    def wait_nodes_ready(self, kind: str, count: int, *, timeout_s: float) -> float:
        """Waits until at least `count` nodes of a kind are Ready; returns the seconds it took."""
        started = time.monotonic()
        component = "kwok" if kind == "kwok" else f"podrunner-{next(iter(comp.PROCESS_NODES))}"
        self._wait(component, lambda: self.ready_nodes(kind) >= count, timeout_s=timeout_s, what=f"{count} nodes")
        return time.monotonic() - started

    # ---- internals -----------------------------------------------------------------------------------------
    def _pidfile(self, component: str) -> PidFile:
        return PidFile(self.layout.run_dir / f"{component}.pid")

    def _start(self, component: str, argv: list[str]) -> None:
        procs.start(component, argv, run_dir=self.layout.run_dir, log_dir=self.layout.log_dir)

    def _wait(self, component: str, ready: Callable[[], bool], *, timeout_s: float, what: str = "ready") -> None:
        deadline = time.monotonic() + timeout_s
        delay_s = 0.05
        while True:
            if self.pid(component) is None:
                raise ClusterError(
                    f"{component} exited during start; last lines of {self.layout.log(component)}:\n"
                    + self.log_tail(component)
                )
            try:
                if ready():
                    return
            except (OSError, ValueError, RuntimeError):
                pass  # not answering yet
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{component} was not {what} after {timeout_s:.0f} s; last lines of "
                    f"{self.layout.log(component)}:\n" + self.log_tail(component)
                )
            time.sleep(delay_s)
            delay_s = min(delay_s * 1.5, 0.5)

    class _Step:
        def __init__(self, cluster: LocalCluster, label: str) -> None:
            self.cluster, self.label = cluster, label

        def __enter__(self) -> None:
            self.started = time.monotonic()

        def __exit__(self, exc_type: object, *_: object) -> None:
            if exc_type is None:
                self.cluster._out(f"{self.label} ({time.monotonic() - self.started:.1f} s)")

    def _step(self, label: str) -> LocalCluster._Step:
        return LocalCluster._Step(self, label)


__all__ = ["ClusterError", "LocalCluster", "kwok_node_name"]
