"""The kubelet's log endpoint, so `kubectl logs` works: HTTPS on 127.0.0.1 (self-signed certificate) serving
`/containerLogs/{namespace}/{pod}/{container}` with `follow`, `tailLines`, `previous` and `limitBytes` (e2e layer).

The API server proxies `pods/log` here, at the port published in the node's `daemonEndpoints`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from e2e.cluster.podrunner.context import HOST_IP, RunnerContext

log = logging.getLogger("podrunner")

FOLLOW_POLL_S = 0.2
FOLLOW_END_IDLE_S = 0.5


def tail_bytes(data: bytes, lines: int) -> bytes:
    """The last `lines` lines of `data` (a trailing newline does not count as an extra line)."""
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def _self_signed(directory: Path, node: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node}@podrunner")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(node), x509.IPAddress(ipaddress.ip_address(HOST_IP))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class LogServer:
    """Serves container logs from the runner's state directory on an ephemeral port of 127.0.0.1."""

    def __init__(
        self,
        ctx: RunnerContext,
        find_pod_dir: Callable[[str, str], Path | None],
        is_running: Callable[[str, str, str], bool],
        waiting_reason: Callable[[str, str, str], str | None] = lambda *_: None,
    ) -> None:
        find = find_pod_dir

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                log.debug("logserver: " + format, *args)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
                parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
                if parts == ["healthz"]:
                    self._send(200, b"ok")
                    return
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self._send(404, b"not found: the podrunner serves /containerLogs/{ns}/{pod}/{container}\n")
                    return
                _, namespace, pod, container = parts
                pod_dir = find(namespace, pod)
                log_path = pod_dir / f"{container}.log" if pod_dir else None
                if query.get("previous") in ("true", "1") and log_path is not None:
                    log_path = log_path.with_name(log_path.name + ".previous")
                if log_path is None or not log_path.exists():
                    reason = waiting_reason(namespace, pod, container)
                    if reason:  # the kubelet's answer for a container that never started
                        text = f'container "{container}" in pod "{pod}" is waiting to start: {reason}\n'
                        self._send(400, text.encode())
                    else:
                        self._send(404, f'container "{container}" in pod "{pod}" has no log here\n'.encode())
                    return
                data = log_path.read_bytes()
                if "tailLines" in query and query["tailLines"].isdigit():
                    data = tail_bytes(data, int(query["tailLines"]))
                if "limitBytes" in query and query["limitBytes"].isdigit():
                    data = data[: int(query["limitBytes"])]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(data)
                if query.get("follow") in ("true", "1"):
                    self._follow(log_path, lambda: is_running(namespace, pod, container))

            def _follow(self, log_path: Path, running: Callable[[], bool]) -> None:
                position = log_path.stat().st_size
                inode = log_path.stat().st_ino
                idle_since = time.monotonic()
                while True:
                    try:
                        stat = log_path.stat()
                    except FileNotFoundError:
                        return
                    if stat.st_ino != inode:
                        return  # the container restarted: its log was rotated
                    if stat.st_size > position:
                        with log_path.open("rb") as handle:
                            handle.seek(position)
                            chunk = handle.read(stat.st_size - position)
                        position += len(chunk)
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        idle_since = time.monotonic()
                    elif ctx.shutting_down.is_set() or (
                        time.monotonic() - idle_since > FOLLOW_END_IDLE_S and not running()
                    ):
                        return  # like the kubelet: following ends when the container has stopped
                    time.sleep(FOLLOW_POLL_S)

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((HOST_IP, 0), Handler)
        self._server.daemon_threads = True
        cert, key = _self_signed(ctx.state_dir / "kubelet-pki", ctx.node_name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="logserver", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("serving container logs on https://%s:%d", HOST_IP, self.port)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown()
            self._server.server_close()
