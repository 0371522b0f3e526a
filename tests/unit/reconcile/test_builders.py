"""The builders render deterministic, hardened children; golden files pin the rendered objects."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dialogue_operator.reconcile import (
    ModelObject,
    build_config_map,
    build_deployment,
    build_engine_config,
    build_network_policy,
    build_pdb,
    build_service,
)
from dialogue_operator.settings import Settings
from dialogue_runtime import contract

from tests.unit.reconcile.conftest import model_body

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = Settings()

TP4 = {
    "model": {"source": "pvc://model-store/llama-3.1-70b", "servedName": "llama-70b", "maxContextTokens": 32768},
    "resources": {
        "gpus": 4,
        "gpuProduct": "NVIDIA-H100-80GB-HBM3",
        "cpu": 16,
        "memory": "200Gi",
        "sharedMemory": "16Gi",
    },
    "engine": {"args": ["--enable-chunked-prefill"], "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}]},
    "scheduling": {
        "priorityClassName": "inference",
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
                }
            }
        },
    },
    "security": {"apiKeySecretRef": {"name": "llama-keys"}},
    "replicas": 2,
}


def _normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """Hashes and engine.json vary with the runtime's EngineConfig contract; they are tested on their own."""
    text = json.dumps(obj)
    for key in (contract.ANNOTATION_SPEC_HASH, "dialogue.dev/config-hash"):
        text = re.sub(rf'"{re.escape(key)}": "[0-9a-f]+"', f'"{key}": "<hash>"', text)
    out: dict[str, Any] = json.loads(text)
    if "data" in out:
        out["data"] = {k: "<EngineConfig JSON>" for k in out["data"]}
    return out


def _check_golden(name: str, obj: dict[str, Any]) -> None:
    obj = _normalized(obj)
    path = GOLDEN / f"{name}.yaml"
    text = yaml.safe_dump(obj, sort_keys=True, width=120)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"missing golden file {path.name}: run with UPDATE_GOLDEN=1 and review it"
    assert yaml.safe_load(path.read_text()) == obj, f"{path.name} differs; review and run with UPDATE_GOLDEN=1"


@pytest.mark.parametrize(
    ("name", "spec", "variant"),
    [("chat-1gpu", None, "base"), ("tp4-h100", TP4, "base")],
)
def test_deployment_golden(name: str, spec: dict[str, Any] | None, variant: str) -> None:
    model = ModelObject.from_body(model_body(spec))
    _check_golden(f"deployment-{name}", build_deployment(model, variant, SETTINGS, replicas=2))


def test_other_children_golden(chat: ModelObject) -> None:
    _check_golden("configmap-chat", build_config_map(chat, "base", SETTINGS))
    _check_golden("service-chat", build_service(chat))
    _check_golden("pdb-chat", build_pdb(chat))
    _check_golden("networkpolicy-chat", build_network_policy(chat, SETTINGS))


def test_builders_are_deterministic_and_hash_the_spec(chat: ModelObject) -> None:
    first = build_deployment(chat, "base", SETTINGS, 1)
    assert first == build_deployment(ModelObject.from_body(model_body()), "base", SETTINGS, 1)
    scaled = build_deployment(chat, "base", SETTINGS, 2)
    args = ModelObject.from_body(model_body({"model": {"source": "hf://o/m"}, "engine": {"args": ["--seed=1"]}}))
    restarted = build_deployment(args, "base", SETTINGS, 1)["spec"]["template"]["metadata"]["annotations"]
    assert (
        restarted["dialogue.dev/config-hash"]
        != first["spec"]["template"]["metadata"]["annotations"]["dialogue.dev/config-hash"]
    ), "a new engine configuration must roll the pods"
    key = contract.ANNOTATION_SPEC_HASH
    assert scaled["metadata"]["annotations"][key] != first["metadata"]["annotations"][key]
    # scaling alone must not restart pods: the pod template (and its hash) stays the same
    assert scaled["spec"]["template"] == first["spec"]["template"]
    image = ModelObject.from_body(model_body({"model": {"source": "hf://org/m"}, "engine": {"image": "img:2"}}))
    changed = build_deployment(image, "base", SETTINGS, 1)["spec"]["template"]["metadata"]["annotations"][key]
    assert changed != first["spec"]["template"]["metadata"]["annotations"][key]


def test_runtime_pod_contract(chat: ModelObject) -> None:
    dep = build_deployment(chat, "base", SETTINGS, 1)
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels[contract.LABEL_MODEL] == "chat" and labels[contract.LABEL_VARIANT] == "base"
    assert dep["metadata"]["ownerReferences"][0]["controller"] is True
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "engine"
    assert container["image"] == f"{contract.IMAGE_RUNTIME}:{contract.IMAGE_TAG}"
    assert container["command"] == ["python3", "-m", "dialogue_runtime.engine"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env[contract.ENGINE_CONFIG_ENV]["value"] == "/etc/dialogue/engine.json"
    assert [e["name"] for e in container["env"]] == sorted(env)
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    startup = container["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 1800
    assert startup["periodSeconds"] == 2  # a pod that loads in a second is Ready within ~2 s, not 10
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/dialogue", "/dev/shm", "/models", "/tmp"} <= mounts


def test_tensor_parallel_product_affinity_is_merged_into_user_terms() -> None:
    model = ModelObject.from_body(model_body(TP4))
    pod = build_deployment(model, "base", SETTINGS, 2)["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]} in term[
        "matchExpressions"
    ]
    assert {"key": "zone", "operator": "In", "values": ["a"]} in term["matchExpressions"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "16", "memory": "200Gi", "nvidia.com/gpu": "4"}
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert cache["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env[contract.ENGINE_API_KEY_ENV]["valueFrom"]["secretKeyRef"] == {"name": "llama-keys", "key": "api-key"}
    assert env["VLLM_LOGGING_LEVEL"]["value"] == "DEBUG"


def test_engine_config_is_the_runtime_contract() -> None:
    model = ModelObject.from_body(model_body(TP4))
    config = build_engine_config(model, "base", SETTINGS)
    assert config.tensor_parallel_size == 4
    assert config.served_model_name == "llama-70b"
    assert config.local_path == "/models/llama-3.1-70b"
    assert config.max_model_len == 32768
    assert config.api_key_env == contract.ENGINE_API_KEY_ENV
    assert config.extra_args == ["--enable-chunked-prefill"]
    assert config.shutdown_grace_s < SETTINGS.termination_grace_s
    cm = build_config_map(model, "base", SETTINGS)
    assert json.loads(cm["data"]["engine.json"]) == json.loads(config.model_dump_json())


def test_variant_quantization_and_sim_profile() -> None:
    spec = {
        "model": {"source": "hf://org/m"},
        "engine": {"kind": "sim", "sim": {"decodeTokensPerSecond": 50, "maxBatch": 4}},
        "resources": {"gpus": 0},
        "variants": [{"name": "fp8", "quantization": "fp8_per_tensor"}, {"name": "awq", "source": "hf://org/m-awq"}],
    }
    model = ModelObject.from_body(model_body(spec))
    fp8 = build_engine_config(model, "fp8", SETTINGS)
    assert fp8.quantization == "fp8_per_tensor" and fp8.source == "hf://org/m" and fp8.variant == "fp8"
    assert build_engine_config(model, "awq", SETTINGS).source == "hf://org/m-awq"
    assert fp8.engine == "sim" and fp8.sim is not None and fp8.sim.decode_tokens_per_s == 50 and fp8.sim.max_batch == 4
    dep = build_deployment(model, "fp8", SETTINGS, 1)
    assert dep["metadata"]["name"] == "chat-fp8"
    # sim pods request no GPU unless asked, so they fit on CPU-only process nodes and on KWOK nodes alike
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"] == {}


SLOW_VARIANT = {
    "model": {"source": "hf://org/m"},
    "engine": {
        "kind": "sim",
        "args": ["--max-num-seqs=64"],
        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "KEEP", "value": "base"}],
        "sim": {"decodeTokensPerSecond": 50, "maxBatch": 4, "prefillTokensPerSecond": 4000},
    },
    "resources": {"gpus": 0},
    "variants": [
        {
            "name": "slow",
            "quantization": "fp8_per_tensor",
            "engine": {
                "args": ["--max-num-seqs=8"],
                "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                "sim": {"prefillTokensPerSecond": 200, "startupSeconds": 0.5},
            },
        },
        {"name": "same", "quantization": "fp8_per_tensor"},
    ],
}


def test_variant_engine_override_changes_only_that_variants_pods() -> None:
    model = ModelObject.from_body(model_body(SLOW_VARIANT))
    slow, base = build_engine_config(model, "slow", SETTINGS), build_engine_config(model, "base", SETTINGS)
    assert slow.sim is not None and base.sim is not None
    # the variant's sim fields replace the base's one by one; the others are inherited
    assert (slow.sim.prefill_tokens_per_s, slow.sim.startup_s) == (200, 0.5)
    assert (slow.sim.decode_tokens_per_s, slow.sim.max_batch) == (50, 4)
    assert (base.sim.prefill_tokens_per_s, base.sim.startup_s) == (4000, 0.0)
    assert slow.extra_args == ["--max-num-seqs=64", "--max-num-seqs=8"]  # appended: the last value wins
    assert base.extra_args == build_engine_config(model, "same", SETTINGS).extra_args == ["--max-num-seqs=64"]
    cm = build_config_map(model, "slow", SETTINGS)
    assert json.loads(cm["data"]["engine.json"])["sim"]["prefill_tokens_per_s"] == 200
    dep = build_deployment(model, "slow", SETTINGS, 1)
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["LOG_LEVEL"], env["KEEP"]) == ("debug", "base")
    _check_golden("deployment-slow-variant", dep)
    hashes = {
        v: build_deployment(model, v, SETTINGS, 1)["spec"]["template"]["metadata"]["annotations"][
            "dialogue.dev/config-hash"
        ]
        for v in ("base", "same", "slow")
    }
    assert hashes["slow"] != hashes["same"]
