"""The local control plane behaves like a real cluster: version, CRDs with schema validation, GC, RBAC, TLS."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from cluster_support import apply, get_json, wait_for

from e2e.cluster.harness import LocalCluster

pytestmark = pytest.mark.cluster


def test_api_server_answers_with_the_built_version(cluster: LocalCluster) -> None:
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == "v1.35.4"
    assert versions["clientVersion"]["gitVersion"] == "v1.35.4"
    assert cluster.api_server_url.startswith("https://127.0.0.1:")


def test_api_server_serves_tls_signed_by_the_cluster_ca_and_refuses_anonymous_reads(cluster: LocalCluster) -> None:
    context = ssl.create_default_context(cafile=str(cluster.layout.pki_dir / "ca.crt"))
    with urllib.request.urlopen(f"{cluster.api_server_url}/version", context=context, timeout=10) as resp:
        assert json.load(resp)["gitVersion"] == "v1.35.4"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{cluster.api_server_url}/api/v1/namespaces", context=context, timeout=10)
    assert denied.value.code == 403
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{cluster.api_server_url}/version", context=ssl.create_default_context(), timeout=10)


def _crd(group: str) -> str:
    return f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [replicas]
            properties:
              replicas: {{type: integer, minimum: 1}}
              size: {{type: string, enum: [small, large]}}
"""


def test_crd_applies_and_its_schema_rejects_a_bad_object_naming_the_field(
    cluster: LocalCluster, namespace: str
) -> None:
    group = f"t{uuid.uuid4().hex[:6]}.dialogue.dev"
    apply(cluster, _crd(group))
    try:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")
        good = f"apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: good}}\nspec: {{replicas: 2, size: small}}\n"
        apply(cluster, good, namespace)
        assert get_json(cluster, f"widgets.{group}", "good", "-n", namespace)["spec"]["replicas"] == 2

        bad = f"apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: bad}}\nspec: {{replicas: 0, size: huge}}\n"
        proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
        assert proc.returncode != 0
        assert "spec.replicas" in proc.stderr
        assert "spec.size" in proc.stderr
        assert "Unsupported value" in proc.stderr
        assert "bad" not in cluster.kubectl("get", f"widgets.{group}", "-n", namespace, "-o", "name").stdout
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_garbage_collector_deletes_owned_objects_with_their_owner(cluster: LocalCluster, namespace: str) -> None:
    apply(cluster, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\ndata: {a: '1'}\n", namespace)
    owner_uid = get_json(cluster, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    for i in range(3):
        owned = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"owned-{i}",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
            },
        }
        apply(cluster, yaml.safe_dump(owned), namespace)
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    def owned_left() -> list[str]:
        out = cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "name").stdout.split()
        return [name for name in out if "owned-" in name]

    wait_for(lambda: not owned_left(), timeout_s=60, what="the garbage collector to delete owned ConfigMaps")


def test_service_account_without_rights_is_forbidden_and_a_granted_one_is_allowed(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    kubeconfig = tmp_path / "nobody.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": cluster.api_server_url,
                            "certificate-authority": str(cluster.layout.pki_dir / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": "nobody", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "nobody"}}],
                "current-context": "c",
            }
        )
    )

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(cluster.bins.kubectl), f"--kubeconfig={kubeconfig}", "-n", namespace, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    whoami = json.loads(as_nobody("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:nobody"

    denied = as_nobody("get", "pods")
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert f"system:serviceaccount:{namespace}:nobody" in denied.stderr

    cluster.kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", namespace)
    cluster.kubectl(
        "create",
        "rolebinding",
        "nobody-reads",
        "--role=pod-reader",
        f"--serviceaccount={namespace}:nobody",
        "-n",
        namespace,
    )
    wait_for(
        lambda: as_nobody("get", "pods").returncode == 0,
        timeout_s=30,
        what="the RoleBinding to take effect",
    )
    still_denied = as_nobody("get", "secrets")
    assert "Forbidden" in still_denied.stderr
