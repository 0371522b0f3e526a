"""Probe parsing with kubelet defaults, the success/failure threshold logic, and real checks on loopback."""

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from e2e.cluster.podrunner.probes import (
    CheckTarget,
    ProbeConfigError,
    ProbeSpec,
    ProbeTracker,
    resolve_port,
    run_check,
)

PORTS = [{"name": "http", "containerPort": 8000}, {"name": "metrics", "containerPort": 9090}]


def test_defaults_like_the_kubelet() -> None:
    spec = ProbeSpec.parse({"httpGet": {"port": "http"}}, PORTS)
    assert (spec.kind, spec.port, spec.path, spec.scheme) == ("http", 8000, "/", "HTTP")
    assert (spec.initial_delay_s, spec.period_s, spec.timeout_s) == (0.0, 10.0, 1.0)
    assert (spec.success_threshold, spec.failure_threshold) == (1, 3)


def test_parse_all_handlers_and_fields() -> None:
    http_probe = ProbeSpec.parse(
        {
            "httpGet": {
                "path": "/health",
                "port": 8001,
                "scheme": "https",
                "httpHeaders": [{"name": "X", "value": "1"}],
            },
            "initialDelaySeconds": 5,
            "periodSeconds": 2,
            "timeoutSeconds": 3,
            "successThreshold": 2,
            "failureThreshold": 7,
            "terminationGracePeriodSeconds": 4,
        },
        PORTS,
    )
    assert http_probe.path == "/health" and http_probe.port == 8001 and http_probe.scheme == "HTTPS"
    assert http_probe.headers == (("X", "1"),)
    assert (http_probe.initial_delay_s, http_probe.period_s, http_probe.timeout_s) == (5.0, 2.0, 3.0)
    assert (http_probe.success_threshold, http_probe.failure_threshold, http_probe.termination_grace_s) == (2, 7, 4.0)
    assert ProbeSpec.parse({"tcpSocket": {"port": "metrics"}}, PORTS).port == 9090
    assert ProbeSpec.parse({"exec": {"command": ["true"]}}).command == ("true",)


def test_unknown_port_name_and_missing_handler_are_errors() -> None:
    with pytest.raises(ProbeConfigError, match="'grpc-port' is not a port number nor the name"):
        resolve_port("grpc-port", PORTS)
    with pytest.raises(ProbeConfigError, match="no handler"):
        ProbeSpec.parse({"periodSeconds": 1})
    assert resolve_port("8080", PORTS) == 8080


def test_tracker_waits_for_initial_delay_and_period() -> None:
    tracker = ProbeTracker(ProbeSpec(kind="tcp", initial_delay_s=5, period_s=2), started_at=100.0)
    assert not tracker.due(104.9)
    assert tracker.due(105.0)
    tracker.record(True, 105.0)
    assert not tracker.due(106.9)
    assert tracker.due(107.0)


def test_tracker_thresholds() -> None:
    tracker = ProbeTracker(ProbeSpec(kind="tcp", success_threshold=2, failure_threshold=3), started_at=0.0)
    assert tracker.result is None
    assert not tracker.record(True, 1)
    assert tracker.record(True, 2) and tracker.result is True
    assert not tracker.record(False, 3) and not tracker.record(False, 4)
    assert tracker.result is True  # two failures are not three
    assert tracker.record(False, 5) and tracker.result is False
    tracker.record(True, 6)
    assert tracker.result is False  # one success is not two
    tracker.record(True, 7)
    assert tracker.result is True


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ok" else 500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def test_http_and_tcp_checks_against_a_real_server(server: int) -> None:
    target = CheckTarget(pod_ip="127.0.0.1")
    assert run_check(ProbeSpec(kind="http", port=server, path="/ok"), target) == (True, "")
    ok, message = run_check(ProbeSpec(kind="http", port=server, path="/bad"), target)
    assert not ok and "statuscode: 500" in message
    assert run_check(ProbeSpec(kind="tcp", port=server), target)[0]


def test_checks_fail_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        ok, message = run_check(ProbeSpec(kind="tcp", port=port), CheckTarget(pod_ip="127.0.0.1"))
        assert not ok and f"127.0.0.1:{port}" in message
        assert not run_check(ProbeSpec(kind="http", port=port), CheckTarget(pod_ip="127.0.0.1"))[0]


def test_exec_check_needs_a_running_container() -> None:
    ok, message = run_check(ProbeSpec(kind="exec", command=("true",)), CheckTarget(pod_ip="127.0.0.1", pid=None))
    assert not ok and "not running" in message
