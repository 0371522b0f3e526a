"""The gateway's discovery never reads an error answer to a list call as "no models" (which would answer 404 for
every model until the next relist)."""

from __future__ import annotations

import pytest
from dialogue_runtime.gateway.discovery import listed_items

STORAGE_REINIT = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "storage is (re)initializing",
    "reason": "TooManyRequests",
    "code": 429,
}


def test_a_list_answer_gives_its_items() -> None:
    body = {"kind": "DialogueModelList", "items": [{"metadata": {"name": "chat"}}], "metadata": {}}
    assert listed_items("models", 200, body) == [{"metadata": {"name": "chat"}}]
    assert listed_items("pods", 200, {"kind": "PodList", "items": None}) == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, STORAGE_REINIT),
        (200, STORAGE_REINIT),  # a Status object is not a list, whatever the HTTP code says
        (500, {"kind": "DialogueModelList", "items": []}),
        (200, ["not", "an", "object"]),
    ],
)
def test_an_error_answer_is_an_error_not_an_empty_list(status: int, body: object) -> None:
    with pytest.raises(ValueError, match=f"listing models answered HTTP {status}"):
        listed_items("models", status, body)


def test_the_error_names_the_api_servers_message() -> None:
    with pytest.raises(ValueError, match=r"storage is \(re\)initializing"):
        listed_items("models", 429, STORAGE_REINIT)
