"""The Helm chart lints, installs, and grants its ServiceAccount exactly what the operator needs."""

from __future__ import annotations

import subprocess

import pytest

from e2e.cluster.harness import LocalCluster
from tests.integration.operator.conftest import CHART, Release, get_json

pytestmark = pytest.mark.cluster


def _helm(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.bins.helm), *args], capture_output=True, text=True, timeout=120)


def test_chart_lints_and_its_values_schema_refuses_bad_values(cluster: LocalCluster) -> None:
    lint = _helm(cluster, "lint", "--strict", str(CHART))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    bad = _helm(cluster, "template", "x", str(CHART), "--set", "operator.workers=0")
    assert bad.returncode != 0 and "workers" in bad.stderr
    typo = _helm(cluster, "template", "x", str(CHART), "--set", "operatr.workers=2")
    assert typo.returncode != 0 and "operatr" in bad.stderr + typo.stderr


def test_every_rbac_rule_says_why() -> None:
    lines = (CHART / "templates" / "rbac.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[i - 1].strip().startswith("#"), f"rule at line {i + 1} has no comment giving its reason"


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("list", "dialoguemodels.dialogue.dev", True),
        ("patch", "dialoguemodels.dialogue.dev/status", True),
        ("patch", "deployments.apps", True),
        ("create", "deployments.apps", True),
        ("delete", "networkpolicies.networking.k8s.io", True),
        ("watch", "pods", True),
        ("get", "pods/log", True),  # the step a running compression or quality-gate Job is in
        ("patch", "pods", True),  # the deletion cost of runtime pods before a scale-down
        ("create", "events", True),
        # what it must not have
        ("patch", "dialoguemodels.dialogue.dev", False),
        ("update", "dialoguemodels.dialogue.dev", False),
        ("get", "secrets", True),  # only the API-key Secret a model names: does it exist, does it have the key
        ("get", "persistentvolumeclaims", True),  # the claims a model's source and cache name exist
        ("list", "secrets", False),
        ("watch", "secrets", False),
        ("list", "persistentvolumeclaims", False),
        ("delete", "pods", False),
        ("list", "nodes", True),  # the GPU products nodes offer, named when a model's product fits none
        ("watch", "nodes", False),
        ("get", "nodes", False),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", False),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", False),
    ],
)
def test_service_account_has_least_privilege(
    cluster: LocalCluster, chart_release: Release, verb: str, resource: str, allowed: bool
) -> None:
    who = f"system:serviceaccount:{chart_release.namespace}:{chart_release.service_account}"
    name, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    proc = cluster.kubectl("auth", "can-i", verb, name, *extra, "--as", who, "-n", "default", check=False)
    assert proc.stdout.strip() == ("yes" if allowed else "no"), f"{verb} {resource}: {proc.stdout}{proc.stderr}"


def test_chart_operator_deployment_is_available(cluster: LocalCluster, chart_release: Release) -> None:
    dep = get_json(cluster, "deployment", "-n", chart_release.namespace, "-l", "app.kubernetes.io/component=operator")
    (item,) = dep["items"]
    assert item["spec"]["strategy"]["type"] == "Recreate" and item["spec"]["replicas"] == 1
    assert item["status"].get("availableReplicas") == 1
    assert item["spec"]["template"]["spec"]["serviceAccountName"] == chart_release.service_account
