"""CrashLoopBackOff delays as the kubelet computes them."""

from e2e.cluster.podrunner.backoff import CrashBackoff


def test_first_restart_is_immediate_then_doubles_to_the_cap() -> None:
    backoff = CrashBackoff()
    delays = [backoff.on_exit(ran_for_s=1.0) for _ in range(8)]
    assert delays == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]


def test_a_smaller_cap_for_tests() -> None:
    backoff = CrashBackoff(cap_s=15.0)
    assert [backoff.on_exit(1.0) for _ in range(4)] == [0.0, 10.0, 15.0, 15.0]


def test_a_long_run_resets_the_backoff() -> None:
    backoff = CrashBackoff()
    for _ in range(5):
        backoff.on_exit(1.0)
    assert backoff.on_exit(ran_for_s=601.0) == 0.0
    assert backoff.on_exit(ran_for_s=1.0) == 10.0


def test_huge_counts_do_not_overflow() -> None:
    assert CrashBackoff().delay_s(10_000) == 300.0
