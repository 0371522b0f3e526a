"""Conversation keys: header, session, user, opening messages, none."""

from dialogue_runtime.gateway.conversation_key import conversation_key

OPENING = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_precedence_header_session_user_opening() -> None:
    body = {"user": "alice", "messages": OPENING}
    assert conversation_key({"X-Session-ID": "abc"}, body, session_id="s1").source == "header"
    assert conversation_key({}, body, session_id="s1").value == "s:s1"
    assert conversation_key({}, body).value == "u:alice"
    assert conversation_key({}, {"messages": OPENING}).source == "opening"


def test_opening_key_is_stable_across_turns_and_differs_between_conversations() -> None:
    turn1 = {"messages": OPENING}
    turn3 = {
        "messages": [*OPENING, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "And then?"}]
    }
    other = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Bonjour"}]}
    assert conversation_key({}, turn1) == conversation_key({}, turn3)
    assert conversation_key({}, turn1) != conversation_key({}, other)


def test_structured_content_and_no_key() -> None:
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}
    assert conversation_key({}, parts).source == "opening"
    assert conversation_key({}, {"prompt": "Once upon"}).value is None
    assert conversation_key({}, {"messages": [{"role": "assistant", "content": "x"}]}).source == "none"


def test_adapter_scopes_the_key() -> None:
    key = conversation_key({}, {"user": "bob"})
    assert key.scoped(None) == "u:bob"
    assert key.scoped("sql-lora") != key.scoped(None)
    assert conversation_key({}, {}).scoped("a") is None
