"""Command lines, certificates and config files of each control-plane component (e2e cluster layer).

Every component listens on 127.0.0.1 only, serves TLS signed by the cluster CA and authenticates to the API
server with its own client certificate; the API server authorizes with Node,RBAC.
"""

from __future__ import annotations

import functools
import ipaddress
import subprocess
import sys
from pathlib import Path

from e2e.cluster.build import Binaries
from e2e.cluster.layout import Layout, Ports
from e2e.cluster.nodes import KWOK_ANNOTATION_SELECTOR, kwok_config
from e2e.cluster.pki import API_SERVER_IPS, API_SERVER_SANS, Pki, write_kubeconfig

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
LOCAL = ("127.0.0.1",)
# client certificate name -> (CN, O): identities the built-in RBAC roles know.
CLIENTS = {
    "admin": ("kubernetes-admin", "system:masters"),
    "apiserver-etcd-client": ("kube-apiserver-etcd-client", None),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
}
SERVERS = ("etcd", "controller-manager-serving", "scheduler-serving", "kwok-serving")


def write_pki(layout: Layout, ports: Ports) -> None:
    """CA, service-account key, every certificate and kubeconfig; the CA is kept across restarts."""
    pki = Pki(layout.pki_dir)
    if not pki.exists():
        pki.create_ca()
    pki.issue("apiserver", cn="kube-apiserver", server=True, dns=(*API_SERVER_SANS,), ips=(*API_SERVER_IPS,))
    for name, (cn, org) in CLIENTS.items():
        pki.issue(name, cn=cn, org=org, client=True)
    for name in SERVERS:
        pki.issue(name, cn=name, server=True, client=name == "etcd", dns=("localhost",), ips=LOCAL)
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    server = f"https://127.0.0.1:{ports.apiserver}"
    write_kubeconfig(layout.kubeconfig, server=server, ca=pki.ca.cert, client=layout.pair("admin"), user="admin")
    for component, user in (("controller-manager", "system:kube-controller-manager"),
                            ("scheduler", "system:kube-scheduler")):  # fmt: skip
        write_kubeconfig(
            layout.component_kubeconfig(component),
            server=server,
            ca=pki.ca.cert,
            client=layout.pair(component),
            user=user,
        )


@functools.cache
def _is_etcd_34(etcd: Path) -> bool:
    version = subprocess.run([str(etcd), "--version"], capture_output=True, text=True, check=False).stdout
    return "etcd Version: 3.4." in version


def etcd_argv(bins: Binaries, layout: Layout, ports: Ports) -> list[str]:
    ca = str(layout.pki_dir / "ca.crt")
    cert = layout.pair("etcd")
    client_url = f"https://127.0.0.1:{ports.etcd_client}"
    peer_url = f"https://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bins.etcd),
        "--name=dialogue-local",
        f"--data-dir={layout.tmpfs_dir / 'etcd'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=dialogue-local={peer_url}",
        "--initial-cluster-state=new",
        f"--cert-file={cert.cert}",
        f"--key-file={cert.key}",
        "--client-cert-auth",
        f"--trusted-ca-file={ca}",
        f"--peer-cert-file={cert.cert}",
        f"--peer-key-file={cert.key}",
        "--peer-client-cert-auth",
        f"--peer-trusted-ca-file={ca}",
        # etcd 3.4 (Debian's) only knows the experimental name; without it a watch with no resourceVersion
        # gets 504 "Too large resource version".
        f"--{'experimental-' if _is_etcd_34(bins.etcd) else ''}watch-progress-notify-interval=1s",
        "--quota-backend-bytes=4294967296",
        "--logger=zap",
        "--log-outputs=stderr",
    ]


def apiserver_argv(bins: Binaries, layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki_dir
    etcd_client = layout.pair("apiserver-etcd-client")
    serving = layout.pair("apiserver")
    kubelet_client = layout.pair("apiserver-kubelet-client")
    return [
        str(bins.kube_apiserver),
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--etcd-servers=https://127.0.0.1:{ports.etcd_client}",
        f"--etcd-cafile={pki / 'ca.crt'}",
        f"--etcd-certfile={etcd_client.cert}",
        f"--etcd-keyfile={etcd_client.key}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={kubelet_client.cert}",
        f"--kubelet-client-key={kubelet_client.key}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--anonymous-auth=true",  # /readyz and /version for unauthenticated probes, as on kubeadm clusters
        "--profiling=false",
        # The `kubernetes` Service cannot point at 127.0.0.1 (Endpoints refuse loopback): no reconciler.
        "--endpoint-reconciler-type=none",
        "--max-requests-inflight=800",
        "--max-mutating-requests-inflight=400",
        "--v=1",
    ]


def _serving_flags(layout: Layout, component: str, port: int) -> list[str]:
    serving = layout.pair(f"{component}-serving")
    kubeconfig = layout.component_kubeconfig(component)
    return [
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={layout.pki_dir / 'ca.crt'}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
    ]


def controller_manager_argv(bins: Binaries, layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki_dir
    return [
        str(bins.kube_controller_manager),
        f"--kubeconfig={layout.component_kubeconfig('controller-manager')}",
        *_serving_flags(layout, "controller-manager", ports.controller_manager),
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--allocate-node-cidrs=false",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--concurrent-gc-syncs=30",
        "--v=1",
    ]


def scheduler_config(layout: Layout) -> Path:
    path = layout.config_dir / "scheduler.yaml"
    path.write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        "clientConnection:\n"
        f"  kubeconfig: {layout.component_kubeconfig('scheduler')}\n"
        "  qps: 200\n"
        "  burst: 400\n"
        "leaderElection:\n"
        "  leaderElect: false\n"
    )
    return path


def scheduler_argv(bins: Binaries, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(bins.kube_scheduler),
        f"--config={scheduler_config(layout)}",
        *_serving_flags(layout, "scheduler", ports.scheduler),
        "--v=1",
    ]


def kwok_argv(bins: Binaries, layout: Layout, ports: Ports) -> list[str]:
    config = layout.config_dir / "kwok.yaml"
    config.write_text(kwok_config(bins.kwok_stages.read_text()))
    serving = layout.pair("kwok-serving")
    return [
        str(bins.kwok),
        f"--kubeconfig={layout.kubeconfig}",
        f"--config={config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION_SELECTOR}",
        f"--server-address=127.0.0.1:{ports.kwok}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        "--node-ip=127.16.0.1",
    ]


# Process-backed nodes (the pod runner is e2e.cluster.podrunner): name -> (GPUs, GPU product). Their pod CIDRs
# depend on the cluster's port base (`process_node_cidr`), so two local clusters on one machine (tests and the
# demo, say) never hand out the same pod IP: all pods share the host's network.
PROCESS_NODES: dict[str, tuple[int, str | None]] = {
    "proc-gpu-0": (8, "NVIDIA-L4"),
    "proc-cpu-0": (0, None),
}
PROCESS_NET = ipaddress.ip_network("127.32.0.0/11")  # 127.32.0.0 - 127.63.255.255: 8192 /24s, clear of KWOK's
PROCESS_CIDR_PAIRS = 4093  # a prime: port bases collide only when they differ by a multiple of it


def process_node_cidr(node: str, port_base: int) -> str:
    """The node's /24 inside PROCESS_NET: pair `port_base % 4093`, one /24 per process node in the pair."""
    index = 2 * (port_base % PROCESS_CIDR_PAIRS) + list(PROCESS_NODES).index(node)
    return f"{PROCESS_NET.network_address + 256 * index}/24"


def podrunner_argv(layout: Layout, node: str, port_base: int) -> list[str]:
    gpus, product = PROCESS_NODES[node]
    cidr = process_node_cidr(node, port_base)
    argv = [
        sys.executable,
        "-m",
        "e2e.cluster.podrunner",
        f"--kubeconfig={layout.kubeconfig}",
        f"--node-name={node}",
        f"--pod-cidr={cidr}",
        f"--state-dir={layout.nodes_dir / node}",
        f"--gpus={gpus}",
    ]
    if product:
        argv.append(f"--gpu-product={product}")
    return argv
