"""The rendered vLLM command line: every EngineConfig field lands on the flag vLLM expects."""

from __future__ import annotations

from dialogue_runtime.engine.config import EngineConfig
from dialogue_runtime.engine.locate import ModelLocation
from dialogue_runtime.engine.vllm_args import render_vllm_args, vllm_command


def config(**fields: object) -> EngineConfig:
    base: dict[str, object] = {
        "model_name": "chat",
        "variant": "base",
        "served_model_name": "chat",
        "source": "pvc://c/m",
    }
    return EngineConfig.model_validate({**base, **fields})


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_minimal_config() -> None:
    args = render_vllm_args(config(), "/models/m", "10.0.0.7")
    assert flag(args, "--model") == "/models/m"
    assert flag(args, "--served-model-name") == "chat"
    assert flag(args, "--host") == "10.0.0.7" and flag(args, "--port") == "8000"
    assert flag(args, "--tensor-parallel-size") == "1"
    assert "--enable-prefix-caching" in args
    assert flag(args, "--shutdown-timeout") == "25"  # drain in-flight requests on SIGTERM
    for absent in ("--max-model-len", "--quantization", "--kv-cache-dtype", "--enable-lora", "--api-key"):
        assert absent not in args


def test_every_field() -> None:
    cfg = config(
        max_model_len=4096,
        tensor_parallel_size=4,
        quantization="fp8_per_tensor",
        kv_cache_dtype="fp8",
        gpu_memory_utilization=0.85,
        enable_prefix_caching=False,
        chat_template="/etc/dialogue/template.jinja",
        lora_modules={"sql": "/models/lora/sql", "b": "/models/lora/b"},
        extra_args=["--max-num-seqs", "64"],
        port=9000,
        shutdown_grace_s=0,
    )
    args = render_vllm_args(cfg, ModelLocation("org/name", revision="abc123", downloads=True), "0.0.0.0")
    assert flag(args, "--model") == "org/name" and flag(args, "--revision") == "abc123"
    assert flag(args, "--max-model-len") == "4096"
    assert flag(args, "--tensor-parallel-size") == "4"
    assert flag(args, "--quantization") == "fp8_per_tensor"
    assert flag(args, "--kv-cache-dtype") == "fp8"
    assert flag(args, "--gpu-memory-utilization") == "0.85"
    assert "--no-enable-prefix-caching" in args and "--enable-prefix-caching" not in args
    assert flag(args, "--chat-template") == "/etc/dialogue/template.jinja"
    assert "--enable-lora" in args
    lora = args.index("--lora-modules")
    assert args[lora + 1 : lora + 3] == ["b=/models/lora/b", "sql=/models/lora/sql"]  # sorted: stable pod specs
    assert args[-2:] == ["--max-num-seqs", "64"]  # extra args last: they override what came before
    assert flag(args, "--port") == "9000"
    assert "--shutdown-timeout" not in args


def test_command_uses_the_module_entrypoint() -> None:
    cmd = vllm_command("/venv/bin/python", ["--model", "x"])
    assert cmd[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]


def test_vllm_cpu_gets_a_small_kv_cache_unless_one_is_set() -> None:
    from dialogue_runtime.engine.__main__ import cpu_kv_cache_env

    assert cpu_kv_cache_env(config(), {}, vllm_cpu=True) == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    assert cpu_kv_cache_env(config(), {"VLLM_CPU_KVCACHE_SPACE": "4"}, vllm_cpu=True) == {}
    assert cpu_kv_cache_env(config(extra_args=["--kv-cache-memory-bytes", "2G"]), {}, vllm_cpu=True) == {}
    assert cpu_kv_cache_env(config(), {}, vllm_cpu=False) == {}  # GPU builds size the cache themselves


def test_vllm_cpu_runs_eager_unless_the_spec_chooses_a_compilation_level() -> None:
    from dialogue_runtime.engine.__main__ import cpu_compile_args

    assert cpu_compile_args(config(), vllm_cpu=True) == ["-O0"]
    assert cpu_compile_args(config(), vllm_cpu=False) == []
    for chosen in (["-O3"], ["-O", "2"], ["--compilation-config", "{}"], ["-cc={}"], ["--optimization-level=1"]):
        assert cpu_compile_args(config(extra_args=chosen), vllm_cpu=True) == []
    assert cpu_compile_args(config(extra_args=["--max-num-seqs", "8"]), vllm_cpu=True) == ["-O0"]
