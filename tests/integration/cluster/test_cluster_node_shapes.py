"""KWOK node addresses and pod CIDRs: unique, on loopback, clear of 127.0.0.0/16 and the process-backed nodes."""

from __future__ import annotations

import ipaddress

import pytest

from e2e.cluster.components import PROCESS_NET, PROCESS_NODES, process_node_cidr
from e2e.cluster.nodes import MAX_KWOK_NODES, kwok_gpu_node, kwok_node_ip, kwok_pod_cidr

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
RESERVED = ipaddress.ip_network("127.0.0.0/16")


def test_every_kwok_node_gets_its_own_loopback_pod_cidr_and_address() -> None:
    cidrs = [ipaddress.ip_network(kwok_pod_cidr(i)) for i in range(MAX_KWOK_NODES)]
    ips = [ipaddress.ip_address(kwok_node_ip(i)) for i in range(MAX_KWOK_NODES)]
    assert MAX_KWOK_NODES >= 10_000
    assert len(set(cidrs)) == MAX_KWOK_NODES
    assert len(set(ips)) == MAX_KWOK_NODES
    process_cidrs = [PROCESS_NET]
    for cidr in cidrs:
        assert cidr.prefixlen == 24
        assert cidr.subnet_of(LOOPBACK)
        assert not cidr.overlaps(RESERVED)
        assert not any(cidr.overlaps(p) for p in process_cidrs)
    for ip in ips:
        assert ip in LOOPBACK and ip not in RESERVED
        assert not any(ip in c for c in process_cidrs)
        assert str(ip).split(".")[-1] not in ("0", "255")
    assert not any(ip in c for c in cidrs[:300] for ip in ips[:300])


def test_node_index_outside_the_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        kwok_pod_cidr(MAX_KWOK_NODES)


def test_products_rotate_so_each_is_on_every_third_node() -> None:
    products = [kwok_gpu_node(i)["metadata"]["labels"]["nvidia.com/gpu.product"] for i in range(6)]
    assert products[:3] == products[3:]
    assert len(set(products)) == 3


def test_process_node_cidrs_differ_between_clusters_on_neighbouring_ports() -> None:
    """Two clusters on one machine (the tests' and the demo's) must not hand out the same pod IPs."""
    seen: set[str] = set()
    for port_base in [6443, 7443, 9443, 17443, *range(20000, 20000 + 6 * 50, 6)]:
        cidrs = {process_node_cidr(node, port_base) for node in PROCESS_NODES}
        assert len(cidrs) == len(PROCESS_NODES)
        assert all(ipaddress.ip_network(c).subnet_of(PROCESS_NET) for c in cidrs)
        assert not cidrs & seen
        seen |= cidrs
    assert process_node_cidr("proc-cpu-0", 6443) != process_node_cidr("proc-cpu-0", 7443)
