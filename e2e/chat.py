"""A terminal chat client for any OpenAI-compatible endpoint: streams tokens as they arrive (used by the demo).

`python -m e2e.chat --base-url http://HOST:PORT/v1 --model NAME [--api-key KEY]` reads lines from the
terminal, keeps the conversation, and prints the assistant's reply token by token. `/reset` forgets the
conversation, `/quit` (or Ctrl-D) leaves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator


def stream_chat(
    base_url: str, model: str, messages: list[dict[str, str]], api_key: str | None, timeout_s: float = 300.0
) -> Iterator[str]:
    """Yields the content deltas of one streamed chat completion; raises RuntimeError with the server's error."""
    body = json.dumps(
        {"model": model, "messages": messages, "stream": True, "max_tokens": 256, "temperature": 0.2}
    ).encode()
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})},
        method="POST",
    )
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = json.loads(detail)["error"]["message"]
        raise RuntimeError(f"HTTP {exc.code}: {detail}") from exc
    with response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            chunk = json.loads(data)
            for choice in chunk.get("choices", []):
                delta = choice.get("delta", {}).get("content")
                if delta:
                    yield delta


def repl(base_url: str, model: str, api_key: str | None, system_prompt: str | None = None) -> int:
    history: list[dict[str, str]] = []
    print(f"Chatting with {model} at {base_url} (/reset to start over, /quit or Ctrl-D to leave)")
    while True:
        try:
            text = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not text:
            continue
        if text in {"/quit", "/exit"}:
            return 0
        if text == "/reset":
            history.clear()
            print("(conversation forgotten)")
            continue
        history.append({"role": "user", "content": text})
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + history
        print(f"{model}> ", end="", flush=True)
        reply: list[str] = []
        try:
            for delta in stream_chat(base_url, model, messages, api_key):
                reply.append(delta)
                print(delta, end="", flush=True)
        except (RuntimeError, OSError) as exc:
            print(f"\n(error: {exc})")
            history.pop()
            continue
        except KeyboardInterrupt:
            print("\n(interrupted)")
        print()
        history.append({"role": "assistant", "content": "".join(reply)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--system")
    args = parser.parse_args()
    return repl(args.base_url, args.model, args.api_key, args.system)


if __name__ == "__main__":
    sys.exit(main())
