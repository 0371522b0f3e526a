"""Container processes: exit codes, termination messages, and stopping the whole tree, escapees included."""

import time
import uuid
from pathlib import Path

from e2e.cluster.podrunner.container import (
    TAG_ENV,
    ContainerProcess,
    exit_code_of,
    stop_all,
    termination_message,
)


def tagged(tag: str) -> list[int]:
    needle = f"{TAG_ENV}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_exit_codes_of_signals() -> None:
    assert exit_code_of(0) == 0
    assert exit_code_of(3) == 3
    assert exit_code_of(-9) == 137
    assert exit_code_of(-15) == 143


def test_stop_all_kills_the_group_and_a_child_that_left_it(tmp_path: Path) -> None:
    tag = f"test-{uuid.uuid4().hex}/"
    script = "trap '' TERM; setsid sleep 300 & sleep 300 & while true; do sleep 0.1; done"
    proc = ContainerProcess(["sh", "-c", script], {"PATH": "/usr/bin:/bin"}, tmp_path / "c.log", tmp_path, tag=tag)
    deadline = time.monotonic() + 10
    while len(tagged(tag)) < 3:
        assert time.monotonic() < deadline, "the container's processes did not start"
        time.sleep(0.05)
    started = time.monotonic()
    stop_all([proc], grace_s=0.5)
    assert time.monotonic() - started < 5
    assert exit_code_of(proc.popen.returncode) == 137  # it ignored SIGTERM: killed after the grace period
    deadline = time.monotonic() + 5
    while tagged(tag):  # SIGKILLed processes vanish once reaped by their parent or init
        assert time.monotonic() < deadline, f"left running: {tagged(tag)}"
        time.sleep(0.05)


def test_log_is_rotated_to_previous_on_restart(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    for word in ("first", "second"):
        proc = ContainerProcess(["echo", word], {"PATH": "/usr/bin:/bin"}, log, tmp_path)
        proc.popen.wait(timeout=10)
    assert log.read_text() == "second\n"
    assert (tmp_path / "c.log.previous").read_text() == "first\n"


def test_termination_message_file_or_log_tail(tmp_path: Path) -> None:
    message, log = tmp_path / "msg", tmp_path / "c.log"
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    message.write_text("")
    assert termination_message(message, log, 1, "File") == ""
    tail = termination_message(message, log, 1, "FallbackToLogsOnError")
    assert tail.endswith("line 199") and "line 119" not in tail  # the last 80 lines
    assert termination_message(message, log, 0, "FallbackToLogsOnError") == ""  # only on failure
    message.write_text("out of memory")
    assert termination_message(message, log, 1, "FallbackToLogsOnError") == "out of memory"
