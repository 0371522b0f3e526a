"""Where the local cluster keeps its files and which ports it listens on (pure data, e2e cluster layer)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from e2e.cluster.pki import CertPair

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT_BASE = 6443
TMPFS = Path("/dev/shm")


def default_state_dir() -> Path:
    """`.cluster/` in the repository root; `DIALOGUE_CLUSTER_DIR` overrides it."""
    override = os.environ.get("DIALOGUE_CLUSTER_DIR")
    return Path(override).expanduser().resolve() if override else REPO_ROOT / ".cluster"


def default_port_base() -> int:
    """6443 (the API server's port; the other five follow it); `DIALOGUE_CLUSTER_PORT_BASE` overrides it."""
    return int(os.environ.get("DIALOGUE_CLUSTER_PORT_BASE") or DEFAULT_PORT_BASE)


@dataclass(frozen=True)
class Ports:
    """TCP ports on 127.0.0.1, consecutive from a base (`--port-base`): API server first."""

    apiserver: int
    etcd_client: int
    etcd_peer: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def from_base(cls, base: int = DEFAULT_PORT_BASE) -> Ports:
        if not 1024 <= base <= 65530:
            raise ValueError(f"port base {base} must be within 1024..65530")
        return cls(base, base + 1, base + 2, base + 3, base + 4, base + 5)

    def by_component(self) -> dict[str, int]:
        return {
            "kube-apiserver": self.apiserver,
            "etcd (client)": self.etcd_client,
            "etcd (peer)": self.etcd_peer,
            "kube-controller-manager": self.controller_manager,
            "kube-scheduler": self.scheduler,
            "kwok": self.kwok,
        }


@dataclass(frozen=True)
class Layout:
    """Every path of one cluster, derived from its state directory."""

    state_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def config_dir(self) -> Path:
        return self.state_dir / "config"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def nodes_dir(self) -> Path:
        return self.state_dir / "nodes"

    @property
    def info_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def tmpfs_dir(self) -> Path:
        """etcd's data on tmpfs, one folder per state directory."""
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:10]
        return TMPFS / f"dialogue-cluster-{digest}"

    def pair(self, name: str) -> CertPair:
        return CertPair(self.pki_dir / f"{name}.crt", self.pki_dir / f"{name}.key")

    def component_kubeconfig(self, component: str) -> Path:
        return self.config_dir / f"{component}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"


@dataclass
class ClusterInfo:
    """What `up` recorded in `cluster.json`: ports and the requested node counts."""

    port_base: int
    kwok_nodes: int
    process_nodes: list[str]
    started_at: str
    real_node: bool = False

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ClusterInfo | None:
        try:
            raw = json.loads(path.read_text())
            return cls(**raw)
        except (OSError, ValueError, TypeError):
            return None
