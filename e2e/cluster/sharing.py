"""One local cluster shared by concurrent users (pytest sessions, benchmarks) on this machine.

Each user registers its pid under the cluster's state directory while it holds the cluster; whoever finds the
cluster down starts it and leaves a marker; the last live user out stops a cluster that was started that way,
never one that was already running (a developer's `python -m e2e.cluster up`). All of it under one file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from e2e.cluster.harness import LocalCluster

USERS_DIR = "pytest-users"
LOCK_FILE = ".pytest.lock"
STARTED_MARKER = "started-by-pytest"


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / LOCK_FILE).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def live_users(users_dir: Path) -> list[Path]:
    """The registered users whose process still runs; entries of dead ones are removed."""
    live = []
    for entry in users_dir.glob("*"):
        try:
            os.kill(int(entry.name), 0)
            live.append(entry)
        except (ValueError, ProcessLookupError):
            entry.unlink(missing_ok=True)
        except PermissionError:
            live.append(entry)
    return live


@contextlib.contextmanager
def shared_cluster(cluster: LocalCluster) -> Iterator[LocalCluster]:
    """`cluster` up for the duration (started if it was down; raises ClusterError if it cannot come up)."""
    state = cluster.state_dir
    users = state / USERS_DIR
    me = users / str(os.getpid())
    with locked(state):
        if cluster.up():
            (state / STARTED_MARKER).touch()
        users.mkdir(exist_ok=True)
        me.touch()
    try:
        yield cluster
    finally:
        with locked(state):
            me.unlink(missing_ok=True)
            marker = state / STARTED_MARKER
            if marker.exists() and not live_users(users):
                cluster.down()
                marker.unlink(missing_ok=True)
