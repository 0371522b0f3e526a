"""Variant split: weights, stickiness, name order."""

import collections

from dialogue_runtime.gateway.variants import pick_variant, split_point


def test_split_follows_weights() -> None:
    counts = collections.Counter(pick_variant({"base": 90, "w8a8": 10}, split_point(f"c{i}")) for i in range(20000))
    assert 0.08 < counts["w8a8"] / 20000 < 0.12


def test_ranges_in_name_order_and_zero_weights() -> None:
    weights = {"w8a8": 50, "base": 50, "fp8": 0}
    assert pick_variant(weights, 10.0) == "base"
    assert pick_variant(weights, 60.0) == "w8a8"
    assert pick_variant({"base": 0}, 5.0) is None
    assert pick_variant({"a": 1, "b": 1}, 99.99) == "b"


def test_canary_conversations_stay_on_the_canary_as_its_weight_grows() -> None:
    # 'w8a8' sorts after 'base', so its range is the top of [0, 100) and only widens as its weight grows.
    keys = [f"conv-{i}" for i in range(2000)]
    at_10 = {k for k in keys if pick_variant({"base": 90, "w8a8": 10}, split_point(k)) == "w8a8"}
    at_50 = {k for k in keys if pick_variant({"base": 50, "w8a8": 50}, split_point(k)) == "w8a8"}
    assert 100 < len(at_10) < 300
    assert at_10 <= at_50


def test_split_point_range() -> None:
    points = [split_point(f"k{i}") for i in range(1000)]
    assert all(0 <= p < 100 for p in points)
