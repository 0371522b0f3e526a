"""The operator's pure builders of the compression and evaluation Jobs: args, volumes, names, refusals."""

from __future__ import annotations

from typing import Any

import pytest
from dialogue_operator.reconcile.engine_config import build_engine_config
from dialogue_operator.reconcile.jobs import (
    build_compression_job,
    build_evaluation_job,
    paths_as_written,
    serving_path,
)
from dialogue_operator.reconcile.model import InvalidSpec, ModelObject
from dialogue_operator.settings import Settings

IMAGE = "ghcr.io/dialogue-operator/compress:0.1.0"


def model(source: str = "pvc://models/smollm2", dm: str = "chat", **variant: Any) -> ModelObject:
    variants = [{"name": "w4", "compression": {"scheme": "W4A16", "groupSize": 64,
                                               "calibration": {"dataset": "builtin:chat", "numSamples": 16}}},
                {"name": "w8", "compression": {"scheme": "W8A8"}},
                {"name": "gptq", "source": "pvc://other/gptq"},
                {"name": "fp8", "quantization": "fp8_per_tensor"}]  # fmt: skip
    if variant:
        variants.append(variant)
    body = {
        "metadata": {"name": dm, "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {"model": {"source": source}, "variants": variants},
    }
    return ModelObject.from_body(body)


def container(job: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return c


def arg(job: dict[str, Any], flag: str) -> str:
    args = container(job)["args"]
    return str(args[args.index(flag) + 1])


def test_compression_job_runs_the_recipe_on_the_base_pvc_and_links_the_serving_path() -> None:
    m = model()
    job = build_compression_job(m, "w4", IMAGE)
    c = container(job)
    assert c["command"] == ["python3", "-m", "dialogue_runtime.compress"]
    assert (arg(job, "--base"), arg(job, "--scheme"), arg(job, "--group-size")) == ("/models/smollm2", "W4A16", "64")
    assert (arg(job, "--calibration"), arg(job, "--num-calibration-samples")) == ("builtin:chat", "16")
    assert arg(job, "--link") == serving_path(m, "w4") == "/models/compressed/chat-w4"
    # The Deployment of the variant reads exactly the path the Job links.
    assert build_engine_config(m, "w4", Settings()).local_path == serving_path(m, "w4")
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models"}} in volumes
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job["metadata"]["labels"]["dialogue.dev/variant"] == "w4"


def test_two_models_on_the_same_base_and_recipe_differ_only_in_their_serving_link() -> None:
    """The Job keys the artifact on the base and the recipe; the DialogueModel's name reaches it only as --link,
    so a second model's Job finds the first one's artifact instead of compressing again."""
    first, second = build_compression_job(model(), "w4", IMAGE), build_compression_job(model(dm="chat2"), "w4", IMAGE)
    assert "--model-name" not in container(first)["args"]
    assert (arg(first, "--link"), arg(second, "--link")) == (
        "/models/compressed/chat-w4",
        "/models/compressed/chat2-w4",
    )

    def without_link(job: dict[str, Any]) -> list[str]:
        args = list(container(job)["args"])
        del args[args.index("--link") : args.index("--link") + 2]
        return args

    assert without_link(first) == without_link(second)
    assert arg(first, "--output-root") == "/models/compressed/.artifacts"


def test_job_names_are_stable_and_change_with_the_recipe() -> None:
    a = build_compression_job(model(), "w4", IMAGE)["metadata"]["name"]
    assert a == build_compression_job(model(), "w4", IMAGE)["metadata"]["name"]
    assert a.startswith("chat-w4-compress-")
    changed = model(name="w4b", compression={"scheme": "W4A16", "groupSize": 32})
    assert build_compression_job(changed, "w4b", IMAGE)["metadata"]["name"] != a
    assert len(build_compression_job(model(), "w8", IMAGE)["metadata"]["name"]) <= 63


def test_pvc_calibration_files_are_mounted_read_only() -> None:
    m = model(name="cal", compression={"scheme": "W8A8", "calibration": {"dataset": "pvc://data/sets/chat.jsonl"}})
    job = build_compression_job(m, "cal", IMAGE)
    assert arg(job, "--calibration") == "/calibration/sets/chat.jsonl"
    assert {"name": "calibration", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}} in job["spec"][
        "template"
    ]["spec"]["volumes"]


def test_evaluation_job_compares_the_linked_variant_with_the_base() -> None:
    m = model()
    job = build_evaluation_job(m, "w8", IMAGE)
    assert container(job)["command"][-1] == "dialogue_runtime.evaluate"
    assert (arg(job, "--base"), arg(job, "--variant")) == ("/models/smollm2", "/models/compressed/chat-w8")
    assert (arg(job, "--threshold"), arg(job, "--golden")) == ("0.9", "default")  # the gate's defaults
    assert "--min-agreement" not in container(job)["args"] and "--limit" not in container(job)["args"]
    assert arg(job, "--output") == "/models/compressed/.evaluations/chat-w8.json"
    source = build_evaluation_job(m, "gptq", IMAGE)
    assert arg(source, "--variant") == "/variant-models/gptq"


def test_evaluation_job_takes_the_gate_from_the_variants_quality_gate() -> None:
    gate = {"minRecovery": 0.95, "minAgreement": 0.8, "maxDialogues": 8, "goldenSet": "pvc://smollm2/gold/set.jsonl"}
    m = model(name="strict", compression={"scheme": "W4A16_ASYM", "groupSize": 64}, qualityGate=gate)
    job = build_evaluation_job(m, "strict", IMAGE)
    assert (arg(job, "--threshold"), arg(job, "--min-agreement"), arg(job, "--limit")) == ("0.95", "0.8", "8")
    assert arg(job, "--golden") == "/golden/gold/set.jsonl"
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "golden", "persistentVolumeClaim": {"claimName": "smollm2", "readOnly": True}} in volumes
    # A golden set on the model's own claim is read through the models mount; a new threshold is a new Job.
    same = model(name="strict", compression={"scheme": "W4A16_ASYM", "groupSize": 64},
                 qualityGate={"minRecovery": 0.8, "goldenSet": "pvc://models/gold/set.jsonl"})  # fmt: skip
    other = build_evaluation_job(same, "strict", IMAGE)
    assert arg(other, "--golden") == "/models/gold/set.jsonl"
    assert other["metadata"]["name"] != job["metadata"]["name"]
    compress = build_compression_job(m, "strict", IMAGE)
    assert (arg(compress, "--scheme"), arg(compress, "--group-size")) == ("W4A16_ASYM", "64")


def test_the_jobs_paths_map_back_to_the_spec_references_the_user_wrote() -> None:
    gate = {"goldenSet": "pvc://gold/sets/g.jsonl"}
    cal = {"scheme": "W8A8", "calibration": {"dataset": "pvc://models/calib/missing.jsonl"}}
    m = model(name="cal", compression=cal, qualityGate=gate)
    written = paths_as_written(m, "cal")
    assert written == {
        "/models/calib/missing.jsonl": "pvc://models/calib/missing.jsonl",
        "/golden/sets/g.jsonl": "pvc://gold/sets/g.jsonl",
    }
    # Exactly the paths the Jobs are given.
    assert arg(build_compression_job(m, "cal", IMAGE), "--calibration") in written
    assert arg(build_evaluation_job(m, "cal", IMAGE), "--golden") in written
    assert paths_as_written(model(), "w4") == {}  # builtin sets are passed as written
    assert paths_as_written(model(source="hf://HuggingFaceTB/SmolLM2-135M-Instruct@main", name="cal", compression=cal),
                            "cal") == {}  # fmt: skip


def test_refusals_name_the_model_and_say_why() -> None:
    with pytest.raises(InvalidSpec, match="need a pvc:// model source"):
        build_compression_job(model(source="hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"), "w8", IMAGE)
    with pytest.raises(InvalidSpec, match="ns/chat: variant 'fp8' has no compression"):
        build_compression_job(model(), "fp8", IMAGE)
    with pytest.raises(InvalidSpec, match="no checkpoint"):
        build_evaluation_job(model(), "fp8", IMAGE)
