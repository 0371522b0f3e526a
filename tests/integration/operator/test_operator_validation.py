"""The API server refuses invalid DialogueModels at the door, with a message naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.cluster.harness import LocalCluster
from tests.integration.operator.conftest import CHART, apply, dialogue_model

pytestmark = pytest.mark.cluster
SOURCE = {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"}
OFFICE = {"name": "office", "start": "0 8 * * 1-5", "end": "0 19 * * 1-5", "minReplicas": 2}


@pytest.fixture(scope="module")
def crd(cluster: LocalCluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/dialoguemodels.dialogue.dev", "--timeout=30s")


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"model": SOURCE, "resources": {"gpus": 0}}, "spec.resources.gpus", "at least 1"),
        ({"model": SOURCE, "resources": {"gpus": -2}}, "spec.resources.gpus", "greater than or equal to 0"),
        ({"model": SOURCE, "autoscaling": {"minReplicas": 3, "maxReplicas": 2}}, "spec.autoscaling.minReplicas", ""),
        ({"model": SOURCE, "replicas": 2, "autoscaling": {"maxReplicas": 4}}, "spec.replicas", "mutually exclusive"),
        (
            {"model": SOURCE, "variants": [{"name": "q", "quantization": "int3"}]},
            "spec.variants[0].quantization",
            "int3",
        ),
        ({"model": {"source": "https://example.com/m"}}, "spec.model.source", "should match"),
        ({"model": SOURCE, "engine": {"args": ["--port=9000"]}}, "spec.engine.args", "--port"),
        ({"model": SOURCE, "rollout": {"targetVariant": "ghost"}}, "spec.rollout.targetVariant", "spec.variants"),
        ({"model": SOURCE, "variants": [{"name": "q"}]}, "spec.variants[0]", "exactly one"),
        (
            {"model": SOURCE, "autoscaling": {"maxReplicas": 4, "schedules": [dict(OFFICE, start="weekdays at 8")]}},
            "spec.autoscaling.schedules[0].start",
            "should match",
        ),
        (
            {"model": SOURCE, "autoscaling": {"maxReplicas": 4, "schedules": [dict(OFFICE, maxReplicas=1)]}},
            "spec.autoscaling.schedules[0].minReplicas",
            "less than or equal to its maxReplicas",
        ),
        (
            {"model": SOURCE, "autoscaling": {"maxReplicas": 4, "schedules": [OFFICE, OFFICE]}},
            "spec.autoscaling.schedules",
            "unique",
        ),
        ({"model": {"source": "pvc://claim/../../etc"}}, "spec.model.source", "should match"),
        ({"model": SOURCE, "variants": [{"name": "q", "source": "s3://bucket/a//b"}]}, "spec.variants[0].source", ""),
        (
            {
                "model": SOURCE,
                "variants": [
                    {
                        "name": "q",
                        "compression": {
                            "scheme": "W8A8",
                            "calibration": {"dataset": "pvc://models/calib/../../x.jsonl"},
                        },
                    }
                ],
            },
            "spec.variants[0].compression.calibration.dataset",
            "should match",
        ),
        (
            {
                "model": SOURCE,
                "variants": [
                    {
                        "name": "q",
                        "compression": {"scheme": "W8A8"},
                        "qualityGate": {"goldenSet": "pvc://gold/../g.jsonl"},
                    }
                ],
            },
            "spec.variants[0].qualityGate.goldenSet",
            "should match",
        ),
    ],
)
def test_invalid_manifest_is_refused_naming_the_field(
    cluster: LocalCluster, namespace: str, crd: None, spec: dict[str, Any], field: str, words: str
) -> None:
    manifest = dialogue_model("bad", spec)
    proc = apply(cluster, namespace, manifest)
    assert proc.returncode != 0, "the API server must refuse it"
    assert field in proc.stderr and words in proc.stderr, proc.stderr


def test_immutable_served_name(cluster: LocalCluster, namespace: str, crd: None) -> None:
    manifest = dialogue_model("chat", {"model": {**SOURCE, "servedName": "chat-v1"}})
    assert apply(cluster, namespace, manifest).returncode == 0
    manifest["spec"]["model"]["servedName"] = "chat-v2"
    proc = apply(cluster, namespace, manifest)
    assert proc.returncode != 0 and "spec.model.servedName" in proc.stderr and "immutable" in proc.stderr
    manifest["spec"]["model"]["source"] = "hf://HuggingFaceTB/SmolLM2-135M-Instruct@v2"  # other fields may change
    manifest["spec"]["model"]["servedName"] = "chat-v1"
    assert apply(cluster, namespace, manifest).returncode == 0


def test_unknown_field_is_refused(cluster: LocalCluster, namespace: str, crd: None) -> None:
    manifest = dialogue_model("bad")
    manifest["spec"]["gpuCount"] = 2
    proc = apply(cluster, namespace, manifest)
    assert proc.returncode != 0 and 'unknown field "spec.gpuCount"' in proc.stderr


def test_kubectl_explain_documents_the_api(cluster: LocalCluster, crd: None) -> None:
    out = cluster.kubectl("explain", "dialoguemodel.spec.resources.gpus").stdout
    assert "GPUs per replica" in out
