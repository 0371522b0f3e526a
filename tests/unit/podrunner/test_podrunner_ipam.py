"""Pod IPs from the node's podCIDR: never the network, .1 or broadcast; no reuse while in use; next-fit."""

import pytest

from e2e.cluster.podrunner.ipam import IPExhausted, PodIPAllocator


def test_first_address_is_dot_two_and_same_uid_keeps_its_ip() -> None:
    ipam = PodIPAllocator("127.32.1.0/24")
    assert ipam.allocate("a") == "127.32.1.2"
    assert ipam.allocate("a") == "127.32.1.2"
    assert ipam.allocate("b") == "127.32.1.3"


def test_released_address_is_not_reused_before_the_range_wraps() -> None:
    ipam = PodIPAllocator("127.32.1.0/29")  # usable: .2 .. .6
    assert [ipam.allocate(u) for u in "abc"] == ["127.32.1.2", "127.32.1.3", "127.32.1.4"]
    ipam.release("a")
    assert ipam.allocate("d") == "127.32.1.5"
    assert ipam.allocate("e") == "127.32.1.6"
    assert ipam.allocate("f") == "127.32.1.2"  # wrapped; .2 is free again
    with pytest.raises(IPExhausted, match=r"127.32.1.0/29"):
        ipam.allocate("g")


def test_exhaustion_never_hands_out_reserved_addresses() -> None:
    ipam = PodIPAllocator("127.32.1.0/24")
    ips = {ipam.allocate(str(i)) for i in range(ipam.capacity)}
    assert len(ips) == 253
    assert not ips & {"127.32.1.0", "127.32.1.1", "127.32.1.255"}


def test_reserve_restores_a_previous_ip_only_when_free_and_in_range() -> None:
    ipam = PodIPAllocator("127.32.1.0/24")
    assert ipam.reserve("a", "127.32.1.9")
    assert not ipam.reserve("b", "127.32.1.9")
    assert not ipam.reserve("c", "127.32.1.1")
    assert not ipam.reserve("c", "10.0.0.5")
    assert ipam.allocate("a") == "127.32.1.9"
    assert ipam.in_use() == {"a": "127.32.1.9"}
