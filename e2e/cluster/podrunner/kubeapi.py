"""A minimal thread-safe Kubernetes REST client for the pod runner: JSON in, JSON out (e2e I/O layer).

The runner needs a handful of calls (get/create/patch/delete, one watch) with exact control over patch content
types and timeouts; plain urllib3 over the kubeconfig's credentials keeps that explicit.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(RuntimeError):
    """The API server answered an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str, what: str) -> None:
        super().__init__(f"{what}: {status} {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to talk to it, read from a kubeconfig."""

    server: str
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    token: str | None
    insecure: bool

    @property
    def host_port(self) -> tuple[str, int]:
        url = urllib.parse.urlsplit(self.server)
        return url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)


def load_kubeconfig(path: Path, scratch_dir: Path) -> Credentials:
    """Read the current context of a kubeconfig; inline certificate data is written under `scratch_dir`."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read kubeconfig {path}: {exc}") from exc
    contexts = {c["name"]: c.get("context", {}) for c in config.get("contexts") or []}
    clusters = {c["name"]: c.get("cluster", {}) for c in config.get("clusters") or []}
    users = {u["name"]: u.get("user", {}) for u in config.get("users") or []}
    current = config.get("current-context") or next(iter(contexts), None)
    if current not in contexts:
        raise ValueError(f"kubeconfig {path} has no context {current!r}")
    context = contexts[current]
    cluster = clusters.get(context.get("cluster"), {})
    user = users.get(context.get("user"), {})
    scratch_dir.mkdir(parents=True, exist_ok=True)

    def file_of(data_key: str, file_key: str, section: Mapping[str, Any]) -> str | None:
        if section.get(data_key):
            target = scratch_dir / f"{data_key}.pem"
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # keys: owner-only
            with os.fdopen(fd, "wb") as handle:
                handle.write(base64.b64decode(section[data_key]))
            return str(target)
        value = section.get(file_key)
        if value and not Path(value).is_absolute():
            value = str(path.parent / value)
        return str(value) if value else None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    if "server" not in cluster:
        raise ValueError(f"kubeconfig {path}: cluster of context {current!r} has no server")
    return Credentials(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=file_of("certificate-authority-data", "certificate-authority", cluster),
        cert_file=file_of("client-certificate-data", "client-certificate", user),
        key_file=file_of("client-key-data", "client-key", user),
        token=token,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


class KubeClient:
    """JSON requests against one API server. Safe to share between threads (urllib3 pools are)."""

    def __init__(self, creds: Credentials, timeout_s: float = 15.0) -> None:
        self.creds = creds
        self.timeout_s = timeout_s
        context = ssl.create_default_context(cafile=creds.ca_file) if creds.ca_file else ssl.create_default_context()
        if creds.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if creds.cert_file and creds.key_file:
            context.load_cert_chain(creds.cert_file, creds.key_file)
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=16, ssl_context=context, retries=False)
        self._headers = {"Accept": "application/json", "User-Agent": "dialogue-podrunner/0.1"}
        if creds.token:
            self._headers["Authorization"] = f"Bearer {creds.token}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
    ) -> JSON:
        url = self._url(path, params)
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        what = f"{method} {path}"
        try:
            response = self._pool.request(
                method, url, body=data, headers=headers, timeout=timeout_s or self.timeout_s, preload_content=True
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, f"API server unreachable: {exc}", what) from exc
        payload = response.data.decode("utf-8", errors="replace")
        if response.status >= 400:
            try:
                message = json.loads(payload).get("message", payload)
            except ValueError:
                message = payload
            raise ApiError(response.status, str(message)[:500], what)
        return json.loads(payload) if payload else {}

    def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        return self.request("GET", path, params=params)

    def get_or_none(self, path: str) -> JSON | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def watch(self, path: str, params: Mapping[str, str], timeout_s: float) -> Iterator[JSON]:
        """Stream watch events ({"type", "object"}) until the server closes the watch."""
        query = {**params, "watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(int(timeout_s))}
        url = self._url(path, query)
        try:
            response = self._pool.request(
                "GET",
                url,
                headers=self._headers,
                preload_content=False,
                timeout=urllib3.Timeout(connect=10.0, read=timeout_s + 30.0),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, f"API server unreachable: {exc}", f"WATCH {path}") from exc
        try:
            if response.status >= 400:
                raise ApiError(response.status, response.data.decode(errors="replace")[:500], f"WATCH {path}")
            buffer = b""
            for chunk in response.stream(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, f"watch interrupted: {exc}", f"WATCH {path}") from exc
        finally:
            response.release_conn()

    def _url(self, path: str, params: Mapping[str, str] | None) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"{self.creds.server}{path}{query}"
