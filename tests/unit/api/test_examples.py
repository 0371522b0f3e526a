"""Every example manifest is a valid DialogueModel for the pydantic models (the cluster test applies them too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dialogue_operator.api import DialogueModelSpec

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "chat-assistant.yaml",
        "tensor-parallel.yaml",
        "quantized-variant.yaml",
        "autoscaling.yaml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "DialogueModel":
            DialogueModelSpec.model_validate(doc["spec"])
