"""pytest plugin: a SIGTERM stops the run the way Ctrl-C does, so fixtures tear down.

Without it a SIGTERM (a CI job's timeout, `timeout`, `kill`) ends pytest at once and leaves running what its
fixtures started: the local cluster a session brought up, gateways, operators and engines. With it the signal
raises KeyboardInterrupt in the main thread: the running test's `finally` blocks and every fixture's teardown run,
then pytest exits with status 2 (interrupted).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pytest


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
