"""Reading a kubeconfig: the current context's server, inline certificate data, file paths relative to it."""

import base64
from pathlib import Path

import pytest
import yaml

from e2e.cluster.podrunner.kubeapi import load_kubeconfig


def write(path: Path, config: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_inline_data_is_written_to_files(tmp_path: Path) -> None:
    config = {
        "current-context": "local",
        "contexts": [{"name": "local", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443/",
                    "certificate-authority-data": base64.b64encode(b"CA").decode(),
                },
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate-data": base64.b64encode(b"CERT").decode(),
                    "client-key-data": base64.b64encode(b"KEY").decode(),
                },
            }
        ],
    }
    creds = load_kubeconfig(write(tmp_path / "kubeconfig", config), tmp_path / "scratch")
    assert creds.server == "https://127.0.0.1:6443"
    assert creds.host_port == ("127.0.0.1", 6443)
    assert Path(str(creds.ca_file)).read_bytes() == b"CA"
    assert Path(str(creds.cert_file)).read_bytes() == b"CERT"
    assert Path(str(creds.key_file)).read_bytes() == b"KEY"
    assert creds.token is None


def test_relative_files_and_token(tmp_path: Path) -> None:
    config = {
        "current-context": "sa",
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.9:7443", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
    }
    creds = load_kubeconfig(write(tmp_path / "kubeconfig", config), tmp_path / "scratch")
    assert creds.ca_file == str(tmp_path / "ca.crt")
    assert creds.token == "abc"
    assert creds.host_port == ("127.0.0.9", 7443)


def test_missing_context_is_named(tmp_path: Path) -> None:
    config = {"current-context": "nope", "contexts": [], "clusters": [], "users": []}
    with pytest.raises(ValueError, match="has no context 'nope'"):
        load_kubeconfig(write(tmp_path / "kubeconfig", config), tmp_path / "scratch")
