"""Consistent hashing with bounded load and least-load choice."""

import collections
import random

import pytest
from dialogue_runtime.gateway.balancer import HashRing, choose_bounded, choose_least_load, load_bound, stable_hash64

URLS = [f"http://127.0.0.{i}:8000" for i in range(1, 4)]


def test_stable_hash_is_the_same_in_every_process() -> None:
    # A fixed value: Python's salted hash() would differ per process and break cross-replica agreement.
    assert stable_hash64("conversation-1") == stable_hash64("conversation-1")
    import hashlib

    expected = int.from_bytes(hashlib.blake2b(b"conversation-1", digest_size=8).digest(), "big")
    assert stable_hash64("conversation-1") == expected


def test_load_bound_matches_kubeai_load_factor() -> None:
    assert load_bound(0, 3, 0.25) == 1
    assert load_bound(11, 3, 0.25) == 5  # ceil(1.25 * 12 / 3)
    with pytest.raises(ValueError, match="at least one endpoint"):
        load_bound(0, 0, 0.25)


def test_same_key_same_endpoint_and_ring_order_is_independent_of_input_order() -> None:
    a = HashRing(URLS)
    b = HashRing(list(reversed(URLS)))
    for i in range(200):
        assert a.walk(f"k{i}") == b.walk(f"k{i}")
        assert choose_bounded(a, f"k{i}", {}).endpoint == a.walk(f"k{i}")[0]


def test_keys_spread_over_endpoints() -> None:
    ring = HashRing(URLS)
    homes = collections.Counter(ring.walk(f"conv-{i}")[0] for i in range(3000))
    assert set(homes) == set(URLS)
    assert max(homes.values()) / min(homes.values()) < 1.35


def test_removing_an_endpoint_moves_only_its_keys() -> None:
    full, smaller = HashRing(URLS), HashRing(URLS[:2])
    moved = [
        k
        for k in (f"c{i}" for i in range(1000))
        if full.walk(k)[0] != URLS[2] and full.walk(k)[0] != smaller.walk(k)[0]
    ]
    assert moved == []


def test_overloaded_home_overflows_to_next_on_walk_and_bound_holds() -> None:
    ring = HashRing(URLS)
    key = "busy-conversation"
    home, second, _ = ring.walk(key)
    choice = choose_bounded(ring, key, {home: 10, second: 0})
    assert choice is not None
    assert choice.endpoint == second and choice.decision == "overflow"
    hit = choose_bounded(ring, key, {home: 1, second: 1})
    assert hit is not None and hit.decision == "affinity_hit" and hit.endpoint == home


def test_bounded_load_under_random_arrivals() -> None:
    ring = HashRing(URLS)
    rng = random.Random(7)
    load: dict[str, int] = {}
    for step in range(5000):
        if load and rng.random() < 0.45:
            victim = rng.choice(sorted(load))
            load[victim] -= 1
            if not load[victim]:
                del load[victim]
            continue
        choice = choose_bounded(ring, f"c{rng.randrange(50)}", load, epsilon=0.25)
        assert choice is not None
        total = sum(load.values())
        assert load.get(choice.endpoint, 0) + 1 <= load_bound(total, 3, 0.25), step
        load[choice.endpoint] = load.get(choice.endpoint, 0) + 1


def test_allowed_filter_and_empty_ring() -> None:
    ring = HashRing(URLS)
    home = ring.walk("k")[0]
    choice = choose_bounded(ring, "k", {}, allowed=lambda e: e != home)
    assert choice is not None and choice.endpoint != home
    assert choose_bounded(HashRing([]), "k", {}) is None
    assert choose_bounded(ring, "k", {}, allowed=lambda _e: False) is None


def test_least_load_picks_idlest_and_rotates_ties() -> None:
    assert choose_least_load(URLS, {URLS[0]: 2, URLS[1]: 1, URLS[2]: 3}).endpoint == URLS[1]
    picks = {choose_least_load(URLS, {}, tie_break=i).endpoint for i in range(3)}
    assert picks == set(URLS)
    assert choose_least_load([], {}) is None
