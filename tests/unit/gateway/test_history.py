"""History trimming to a token budget and the token counters."""

from pathlib import Path

from dialogue_runtime.gateway.history import (
    MESSAGE_OVERHEAD_TOKENS,
    estimate_tokens,
    history_tokens,
    load_tokenizer_counter,
    trim_history,
)


def words(text: str) -> int:
    return len(text.split())


def conversation(turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "sys " * 10}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i} " + "x " * 8})
        messages.append({"role": "assistant", "content": f"answer {i} " + "y " * 8})
    return messages


def test_no_budget_keeps_everything() -> None:
    assert trim_history(conversation(3), None, words) == conversation(3)


def test_oldest_turns_dropped_system_kept_pairs_intact() -> None:
    messages = conversation(5)
    per_message = 10 + MESSAGE_OVERHEAD_TOKENS
    budget = per_message * 5  # system + two full turns
    trimmed = trim_history(messages, budget, words)
    assert trimmed[0]["role"] == "system"
    assert [m["content"].split()[1] for m in trimmed[1:]] == ["3", "3", "4", "4"]
    assert history_tokens(trimmed, words) <= budget


def test_newest_turn_kept_even_over_budget() -> None:
    trimmed = trim_history(conversation(2), 1, words)
    assert [m["role"] for m in trimmed] == ["system", "user", "assistant"]


def test_fallback_estimator() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("é" * 4) == 2  # bytes, not characters


def test_tokenizer_loader_returns_none_without_a_tokenizer(tmp_path: Path) -> None:
    assert load_tokenizer_counter(str(tmp_path / "missing.json")) is None
