"""The command line and the static-model configuration built from it."""

import pytest
from dialogue_runtime.gateway.__main__ import make_parser, settings_from_args
from dialogue_runtime.gateway.static import static_models


def settings(*argv: str):  # type: ignore[no-untyped-def]
    return settings_from_args(make_parser().parse_args(list(argv)))


def test_flags_become_settings() -> None:
    s = settings("--port", "9000", "--max-tokens-cap", "64", "--requests-per-minute", "5", "--routing", "least-load")
    assert (s.port, s.limits.max_tokens_cap, s.requests_per_minute, s.routing) == (9000, 64, 5, "least-load")
    assert s.static_models == () and s.redis_url is None and s.log_content is False


def test_static_models_with_keys_weights_and_budget() -> None:
    s = settings(
        "--static-model", "smol=http://127.0.0.2:1,canary@http://127.0.0.3:1",
        "--static-api-key", "smol=k1,k2",
        "--static-weights", "smol=base:90,canary:10",
        "--static-history-budget", "smol=512",
        "--max-messages", "7",
    )  # fmt: skip
    ((model, endpoints),) = static_models(s)
    assert model.api_keys == {"k1", "k2"}
    assert model.weights == {"base": 90.0, "canary": 10.0}
    assert model.history_token_budget == 512 and model.limits.max_messages == 7
    assert [e.variant for e in endpoints] == ["base", "canary"]


def test_bad_static_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="NAME=VALUE"):
        static_models(settings("--static-model", "smol=http://127.0.0.2:1", "--static-api-key", "nokey"))
