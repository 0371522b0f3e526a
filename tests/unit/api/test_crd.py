"""The committed CRD is generated from the pydantic models and is a valid structural schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dialogue_operator.api import crdgen
from dialogue_operator.api.schema import missing_descriptions

ROOT = Path(__file__).resolve().parents[3]


def _crd_schema() -> dict[str, Any]:
    return crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        found += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], path + "[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], path + "{}")
    return found


def test_committed_crd_is_up_to_date() -> None:
    for folder in ("crds", "charts/dialogue-operator/crds"):
        committed = (ROOT / folder / crdgen.CRD_FILE).read_text()
        assert committed == crdgen.render(), f"{folder}/ is stale: run `make crds` and commit the result"


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = _crd_schema()
    assert missing_descriptions(schema["properties"]["spec"], ".spec") == []
    assert missing_descriptions(schema["properties"]["status"], ".status") == []


def test_schema_is_structural() -> None:
    for path, node in _walk(_crd_schema()):
        assert "$ref" not in node, path
        assert "additionalProperties" not in node or isinstance(node["additionalProperties"], dict), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert "anyOf" not in node and "oneOf" not in node, path
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        assert "title" not in node, path


def test_printer_columns_scale_and_status_subresources() -> None:
    version = crdgen.crd()["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[:1] == ["Ready"] and {"Replicas", "Traffic", "Endpoint", "Age"} <= set(names)
    # -o wide shows why the model is (not) ready, its rollout's step and the autoscaler's last decision.
    wide = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"] if c.get("priority") == 1}
    assert wide == {
        "Reason": '.status.conditions[?(@.type=="Ready")].reason',
        "Variant": '.status.conditions[?(@.type=="VariantReady")].reason',
        "Scaling": ".status.autoscaling.reason",
    }
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert version["subresources"]["status"] == {}
    names_block = crdgen.crd()["spec"]["names"]
    assert names_block["shortNames"] == ["dm"] and "all" not in names_block["categories"]


def test_cel_rules_carry_messages_naming_fields() -> None:
    rules = [r for _, node in _walk(_crd_schema()) for r in node.get("x-kubernetes-validations", [])]
    messages = " | ".join(r["message"] for r in rules)
    for needle in ("spec.replicas", "minReplicas", "--port", "targetVariant", "servedName", "gpus", "qualityGate"):
        assert needle in messages
    assert any("oldSelf" in r["rule"] for r in rules), "an immutability rule is expected"


def test_defaults_let_cel_rules_read_nested_fields() -> None:
    spec = _crd_schema()["properties"]["spec"]["properties"]
    assert spec["engine"]["default"] == {} and spec["engine"]["properties"]["kind"]["default"] == "vllm"
    assert spec["resources"]["default"] == {} and spec["resources"]["properties"]["gpus"]["default"] == 1
    assert spec["engine"]["properties"]["args"]["default"] == []
    assert spec["variants"]["default"] == []
    assert "default" not in spec["autoscaling"] and "default" not in spec["rollout"]


def test_generated_file_parses_as_yaml() -> None:
    doc = yaml.safe_load((ROOT / "crds" / crdgen.CRD_FILE).read_text())
    assert doc["metadata"]["name"] == "dialoguemodels.dialogue.dev"
