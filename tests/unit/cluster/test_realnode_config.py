"""The real node's names, addresses and config files (pure parts of e2e.cluster.realnode and the relay)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from pathlib import Path

import pytest

from e2e.cluster import relay
from e2e.cluster.realnode import NodeNet, cni_conflist, containerd_config, kubelet_config


def test_two_clusters_on_one_machine_get_their_own_namespace_and_addresses(tmp_path: Path) -> None:
    tests, demo = NodeNet.for_state_dir(tmp_path / "tests"), NodeNet.for_state_dir(tmp_path / "demo")
    assert NodeNet.for_state_dir(tmp_path / "tests") == tests  # stable across restarts
    assert tests.netns != demo.netns and tests.veth != demo.veth and tests.pod_cidr != demo.pod_cidr
    for net in (tests, demo):
        assert len(net.veth) <= 15  # IFNAMSIZ
        pods = ipaddress.ip_network(net.pod_cidr)
        assert ipaddress.ip_address(net.node_ip) in pods
        assert not pods.overlaps(ipaddress.ip_network("10.96.0.0/16"))  # the Service range
        link = ipaddress.ip_network(f"{net.host_link_ip}/30", strict=False)
        assert ipaddress.ip_address(net.node_link_ip) in link and not link.overlaps(pods)


def test_pods_get_no_default_route_only_the_service_range_and_the_host_link(tmp_path: Path) -> None:
    net = NodeNet.for_state_dir(tmp_path)
    bridge = cni_conflist(net, tmp_path / "ipam")["plugins"][0]  # type: ignore[index]
    assert bridge["type"] == "bridge" and bridge["ipMasq"] is False
    routes = [r["dst"] for r in bridge["ipam"]["routes"]]
    assert routes == ["10.96.0.0/16", f"{net.host_link_ip}/32"]
    assert "0.0.0.0/0" not in routes
    assert bridge["ipam"]["ranges"] == [[{"subnet": net.pod_cidr, "gateway": net.node_ip}]]


def test_configs_keep_everything_under_the_node_folder_with_the_two_settings_this_machine_needs(
    tmp_path: Path,
) -> None:
    net = NodeNet.for_state_dir(tmp_path)
    containerd = containerd_config(tmp_path, sandbox_image="localhost/pause:1")
    assert "restrict_oom_score_adj = true" in containerd
    for key in ("root", "state", "address"):
        line = next(line for line in containerd.splitlines() if line.strip().startswith(f"{key} ="))
        assert str(tmp_path) in line, line  # never the system containerd's /var/lib or /run
    kubelet = kubelet_config(
        tmp_path, net, ca=tmp_path / "ca.crt", serving=(tmp_path / "s.crt", tmp_path / "s.key"), resolv=tmp_path / "r"
    )
    assert "failCgroupV1: false" in kubelet
    assert f"cgroupRoot: /{net.cgroup_root}" in kubelet
    assert "mode: AlwaysAllow" in kubelet and "enabled: false" in kubelet  # x509 client certs only


def test_relay_copies_bytes_both_ways_and_refuses_a_target_off_loopback() -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    upstream_port = upstream.getsockname()[1]

    def echo() -> None:
        conn, _ = upstream.accept()
        with conn:
            conn.sendall(b"upstream:" + conn.recv(100))

    threading.Thread(target=echo, daemon=True).start()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]

    async def run() -> bytes:
        server = asyncio.create_task(relay.serve([listener], ("127.0.0.1", upstream_port)))
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(100), timeout=5)
        writer.close()
        server.cancel()
        return data

    assert asyncio.run(run()) == b"upstream:hello"
    upstream.close()
    with pytest.raises(SystemExit):
        relay.main(["--netns", "/proc/self/ns/net", "--listen", "127.0.0.1:1", "--to", "10.96.0.1:443"])
