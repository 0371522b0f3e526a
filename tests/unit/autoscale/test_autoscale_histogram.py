"""Histogram quantiles as PromQL computes them, across scrapes and pod restarts."""

from __future__ import annotations

import math

import pytest
from dialogue_operator.autoscale import histogram


def test_quantile_interpolates_inside_the_bucket():
    h = {0.1: 0.0, 0.5: 50.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram.quantile(h, 0.5) == pytest.approx(0.5)
    assert histogram.quantile(h, 0.75) == pytest.approx(0.75)
    assert histogram.quantile(h, 0.25) == pytest.approx(0.3)


def test_quantile_in_inf_bucket_returns_largest_finite_bound():
    assert histogram.quantile({1.0: 1.0, math.inf: 10.0}, 0.95) == 1.0


def test_empty_histogram_has_no_quantile():
    assert histogram.quantile({}, 0.95) is None
    assert histogram.quantile({1.0: 0.0, math.inf: 0.0}, 0.95) is None
    with pytest.raises(ValueError, match="quantile"):
        histogram.quantile({1.0: 1.0}, 1.5)


def test_delta_between_scrapes_and_counter_reset():
    prev = {1.0: 5.0, math.inf: 6.0}
    assert histogram.delta({1.0: 7.0, math.inf: 10.0}, prev) == {1.0: 2.0, math.inf: 4.0}
    assert histogram.delta({1.0: 1.0, math.inf: 1.0}, prev) == {1.0: 1.0, math.inf: 1.0}  # pod restarted
    assert histogram.merge([{1.0: 1.0}, {1.0: 2.0, 2.0: 3.0}]) == {1.0: 3.0, 2.0: 3.0}
