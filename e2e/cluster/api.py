"""A tiny HTTPS client for the local control plane's health endpoints and bulk node creation (e2e cluster layer).

Plain `http.client` with the cluster CA and a client certificate: fast to import, one connection per thread.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from pathlib import Path
from typing import Any

from e2e.cluster.pki import CertPair


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:500]}")
        self.status = status


class Api:
    """Requests to one HTTPS endpoint on 127.0.0.1, authenticated by a client certificate."""

    def __init__(self, port: int, ca: Path, client: CertPair | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca))
        if client is not None:
            self.context.load_cert_chain(str(client.cert), str(client.key))
        self._local = threading.local()

    def _conn(self, timeout_s: float) -> http.client.HTTPSConnection:
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout_s)
            self._local.conn = conn
        conn.timeout = timeout_s
        return conn

    def request(self, method: str, path: str, body: Any = None, *, timeout_s: float = 10.0) -> tuple[int, str]:
        """One request; a broken keep-alive connection is retried once on a new one."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"} if data else {}
        for attempt in range(2):
            conn = self._conn(timeout_s)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read().decode(errors="replace")
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def ok(self, path: str, *, timeout_s: float = 2.0) -> bool:
        """Whether GET `path` answers 200 (connection errors count as no)."""
        try:
            status, _ = self.request("GET", path, timeout_s=timeout_s)
        except (http.client.HTTPException, OSError):
            return False
        return status == 200

    def get_json(self, path: str, *, timeout_s: float = 30.0) -> Any:
        status, body = self.request("GET", path, timeout_s=timeout_s)
        if status != 200:
            raise ApiError(status, body, f"GET {path}")
        return json.loads(body)

    def create(self, path: str, obj: dict[str, Any], *, exist_ok: bool = True) -> None:
        status, body = self.request("POST", path, obj, timeout_s=30.0)
        if status in (200, 201) or (exist_ok and status == 409):
            return
        raise ApiError(status, body, f"POST {path} {obj.get('metadata', {}).get('name')}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
