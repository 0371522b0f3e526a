"""Pod IP allocation from the node's podCIDR (pure; the runner serialises calls with its own lock)."""

from __future__ import annotations

import ipaddress


class IPExhausted(RuntimeError):
    """Every usable address of the podCIDR is held by a pod."""


class PodIPAllocator:
    """Hands out one address per pod uid, never the network address, `.1` (the gateway) or the broadcast.

    Allocation is next-fit: a released address is reused only after the rest of the range was handed out, so a
    client that still holds a deleted pod's IP does not reach a new pod by accident.
    """

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr, strict=True)
        if self.network.version != 4 or self.network.num_addresses < 4:
            raise ValueError(f"pod CIDR {cidr} must be an IPv4 network with at least 4 addresses")
        self._first = int(self.network.network_address) + 2
        self._last = int(self.network.broadcast_address) - 1
        self._next = self._first
        self._by_uid: dict[str, int] = {}
        self._used: set[int] = set()

    @property
    def capacity(self) -> int:
        return self._last - self._first + 1

    def allocate(self, uid: str) -> str:
        """The pod's address: the one it already holds, else the next free one."""
        if uid in self._by_uid:
            return str(ipaddress.ip_address(self._by_uid[uid]))
        for offset in range(self.capacity):
            candidate = self._first + (self._next - self._first + offset) % self.capacity
            if candidate not in self._used:
                self._take(uid, candidate)
                self._next = candidate + 1 if candidate < self._last else self._first
                return str(ipaddress.ip_address(candidate))
        raise IPExhausted(f"no free pod IP left in {self.network} ({self.capacity} in use)")

    def reserve(self, uid: str, ip: str) -> bool:
        """Give the pod back an address it already had (after a runner restart); False if not usable."""
        try:
            value = int(ipaddress.ip_address(ip))
        except ValueError:
            return False
        if self._by_uid.get(uid) == value:
            return True
        if uid in self._by_uid or value in self._used or not self._first <= value <= self._last:
            return False
        self._take(uid, value)
        return True

    def release(self, uid: str) -> None:
        value = self._by_uid.pop(uid, None)
        if value is not None:
            self._used.discard(value)

    def in_use(self) -> dict[str, str]:
        return {uid: str(ipaddress.ip_address(v)) for uid, v in self._by_uid.items()}

    def _take(self, uid: str, value: int) -> None:
        self._by_uid[uid] = value
        self._used.add(value)
