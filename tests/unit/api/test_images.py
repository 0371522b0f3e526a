"""The Dockerfiles are pinned and agree with the local pod runner's image table and the chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dialogue_runtime import contract

from e2e.cluster.images import IMAGE_TABLE

ROOT = Path(__file__).resolve().parents[3]
IMAGES = {
    "runtime": contract.IMAGE_RUNTIME,
    "operator": contract.IMAGE_OPERATOR,
    "gateway": contract.IMAGE_GATEWAY,
    "compress": contract.IMAGE_COMPRESS,
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dockerfile_is_pinned_non_root_and_matches_the_image_table(name: str) -> None:
    text = (ROOT / "images" / name / "Dockerfile").read_text()
    # `make images` passes another BASE (built here from Debian); a normal machine builds on this default.
    assert re.findall(r"^FROM\s+(\S+)", text, flags=re.M) == ["${BASE}"], f"{name}: FROM must be ${{BASE}}"
    (base,) = re.findall(r"^ARG BASE=(\S+)$", text, flags=re.M)
    assert ":" in base and not base.endswith((":latest", ":slim")), f"{name}: base image {base} must be pinned"
    assert re.search(r"^USER 1000$", text, flags=re.M), f"{name}: must run as UID 1000"
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", text, flags=re.M)
    assert entrypoint is not None
    assert json.loads(entrypoint.group(1)) == list(IMAGE_TABLE[IMAGES[name]].entrypoint)


def test_runtime_builds_on_the_official_vllm_image() -> None:
    assert "ARG BASE=vllm/vllm-openai:v" in (ROOT / "images" / "runtime" / "Dockerfile").read_text()
