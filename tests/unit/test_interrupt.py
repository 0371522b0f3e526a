"""A SIGTERM to a test run tears its fixtures down (tests/interrupt.py), so nothing they started is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SESSION = """
import time
from pathlib import Path

import pytest

LOG = Path(__file__).with_name("log.txt")


@pytest.fixture(scope="session")
def resource():
    LOG.write_text("setup\\n")
    yield
    with LOG.open("a") as fh:
        fh.write("teardown\\n")


def test_long(resource):
    try:
        with LOG.open("a") as fh:
            fh.write("running\\n")
        time.sleep(60)
    finally:
        with LOG.open("a") as fh:
            fh.write("finally\\n")
"""


def run_and_terminate(tmp_path: Path, *plugin: str) -> tuple[int, str]:
    (tmp_path / "test_session.py").write_text(SESSION)
    log = tmp_path / "log.txt"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, "test_session.py"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "running" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline and proc.poll() is None, "the test session did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=30), log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_runs_the_running_tests_finally_and_every_fixture_teardown(tmp_path: Path) -> None:
    code, log = run_and_terminate(tmp_path, "-p", "tests.interrupt")
    assert log.splitlines() == ["setup", "running", "finally", "teardown"]
    assert code == pytest.ExitCode.INTERRUPTED


def test_without_the_plugin_a_sigterm_skips_teardown(tmp_path: Path) -> None:
    code, log = run_and_terminate(tmp_path)
    assert "teardown" not in log  # what the plugin is there for
    assert code == -signal.SIGTERM
