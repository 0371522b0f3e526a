"""DIALOGUE_OPERATOR_AUTOSCALE_POLICY: PolicyConfig overrides read from the operator's environment."""

from __future__ import annotations

import pytest
from dialogue_operator.api.serving import AutoscalingSpec
from dialogue_operator.autoscale import PolicyConfig
from dialogue_operator.settings import Settings

VAR = "DIALOGUE_OPERATOR_AUTOSCALE_POLICY"


def test_overrides_reach_the_policy_config_with_ints_kept_ints() -> None:
    settings = Settings.from_env({VAR: "stable_window_s=6, panic_window_s=2.5,min_scale_up_step=2"})
    assert settings.autoscale_policy == {"stable_window_s": 6, "panic_window_s": 2.5, "min_scale_up_step": 2}
    assert isinstance(settings.autoscale_policy["min_scale_up_step"], int)
    config = PolicyConfig.from_spec(AutoscalingSpec(), **settings.autoscale_policy)
    assert (config.stable_window_s, config.panic_window_s, config.min_scale_up_step) == (6, 2.5, 2)
    assert config.scale_down_stabilization_s == 600.0  # untouched fields keep their defaults


def test_unset_means_no_overrides() -> None:
    assert Settings.from_env({}).autoscale_policy == {}


@pytest.mark.parametrize("text", ["stable_window_s", "stable_window_s=fast"])
def test_malformed_item_names_the_variable(text: str) -> None:
    with pytest.raises(ValueError, match=VAR):
        Settings.from_env({VAR: text})


@pytest.mark.parametrize("text", ["stable_windows=10", "=3"])
def test_unknown_name_is_refused_by_the_policy_config(text: str) -> None:
    overrides = Settings.from_env({VAR: text}).autoscale_policy
    with pytest.raises(TypeError, match="unknown overrides"):
        PolicyConfig.from_spec(AutoscalingSpec(), **overrides)
