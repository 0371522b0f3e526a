"""The termination message: the engine's own specific error line, not its wrappers or tracebacks."""

from __future__ import annotations

from dialogue_runtime.engine.termination import engine_error_line, last_meaningful_line

VLLM_KV_TOO_SMALL = """\
INFO 11-28 17:00:01 [api_server.py:1] vLLM API server version 0.32.0
(EngineCore_DP0 pid=4242) ERROR 11-28 17:00:09 [core.py:700] EngineCore failed to start.
(EngineCore_DP0 pid=4242) ERROR 11-28 17:00:09 [core.py:700] Traceback (most recent call last):
(EngineCore_DP0 pid=4242) ERROR 11-28 17:00:09 [core.py:700]   File "/v/kv_cache_utils.py", line 1
(EngineCore_DP0 pid=4242) ERROR 11-28 17:00:09 [core.py:700] ValueError: To serve at least one request with the \
models's max seq len (131072), (3.00 GiB KV cache is needed, which is larger than the available KV cache memory \
(1.00 GiB). Try increasing `VLLM_CPU_KVCACHE_SPACE` or decreasing `max_model_len` when initializing the engine.
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}
"""


def test_the_root_cause_wins_over_the_wrapper() -> None:
    line = engine_error_line(VLLM_KV_TOO_SMALL.splitlines())
    assert line is not None
    assert line.startswith("ValueError: To serve at least one request with the models's max seq len (131072)")
    assert "EngineCore" not in line and "ERROR 11-28" not in line


def test_dotted_exception_names_are_kept() -> None:
    lines = ["Traceback (most recent call last):", '  File "x.py", line 1', "safetensors_rust.SafetensorError: "
             "Error while deserializing header: HeaderTooLarge"]  # fmt: skip
    assert (
        engine_error_line(lines) == "safetensors_rust.SafetensorError: Error while deserializing header: HeaderTooLarge"
    )


def test_only_a_wrapper_is_still_reported() -> None:
    assert engine_error_line(["RuntimeError: Engine core initialization failed. See root cause above."]) == (
        "RuntimeError: Engine core initialization failed. See root cause above."
    )


def test_no_exception_gives_none_and_the_last_line_fallback() -> None:
    lines = ["INFO starting", "Killed", ""]
    assert engine_error_line(lines) is None
    assert last_meaningful_line(lines) == "Killed"


def test_worker_traceback_on_stdout_beats_the_wrapper() -> None:
    lines = [
        "(Worker pid=21127) ERROR 11-28 17:33:18 [multiproc_executor.py:953]     with safe_open(st_file) as f:",
        "(Worker pid=21127) ERROR 11-28 17:33:18 [multiproc_executor.py:953] safetensors._safetensors_rust."
        "SafetensorError: Error while deserializing header: incomplete metadata, file not fully covered",
        "(EngineCore pid=21029) INFO 11-28 17:33:18 [multiproc_executor.py:479] [shutdown] Executor: waiting",
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
    ]
    assert engine_error_line(lines) == (
        "safetensors._safetensors_rust.SafetensorError: Error while deserializing header: incomplete metadata, "
        "file not fully covered"
    )


def test_pydantic_validation_errors_bring_their_reason() -> None:
    lines = [
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for VllmConfig",
        "  Value error, User-specified max_model_len (100000) is greater than the derived max_model_len (8192). "
        "[type=value_error, input_value=ArgsKwargs((), {'model_co...}), input_type=ArgsKwargs]",
        "    For further information visit https://errors.pydantic.dev/2.14/v/value_error",
    ]
    assert engine_error_line(lines) == (
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for VllmConfig: User-specified "
        "max_model_len (100000) is greater than the derived max_model_len (8192)."
    )
