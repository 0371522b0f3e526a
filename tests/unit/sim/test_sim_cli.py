"""The sim's command line: named profiles, with single fields overridden by flags."""

from __future__ import annotations

import pytest
from dialogue_runtime.sim.__main__ import make_parser, profile_from_args
from dialogue_runtime.sim.profiles import VLLM_CPU_SMOLLM2


def test_defaults_are_the_default_profile() -> None:
    args = make_parser().parse_args(["--served-model-name", "m"])
    assert profile_from_args(args).prefill_tokens_per_s == 4000.0


def test_named_profile_with_overrides() -> None:
    argv = ["--served-model-name", "m", "--profile", "vllm-cpu-smollm2", "--max-batch", "8", "--startup-s", "2.5"]
    profile = profile_from_args(make_parser().parse_args(argv))
    assert profile.prefill_tokens_per_s == VLLM_CPU_SMOLLM2.prefill_tokens_per_s == 750.0
    assert (profile.max_batch, profile.startup_s) == (8, 2.5)


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        profile_from_args(make_parser().parse_args(["--served-model-name", "m", "--max-batch", "0"]))
