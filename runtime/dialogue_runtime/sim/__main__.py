"""Command line of the simulated engine: `python -m dialogue_runtime.sim --host H --port P --served-model-name N`.

`--profile NAME` picks a named profile (`sim.profiles`: default, vllm-cpu-smollm2); every `SimProfile` field is
also a flag overriding it (`--prefill-tokens-per-s 4000`, `--max-batch 32`, `--startup-s 5`, ...).
SIGTERM or Ctrl-C stops taking new connections and lets in-flight requests finish (up to `--shutdown-timeout-s`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from aiohttp import web

from dialogue_runtime.engine.config import SimProfile
from dialogue_runtime.sim.profiles import PROFILES
from dialogue_runtime.sim.server import SimEngine, build_app


def _flag_type(annotation: Any) -> Any:
    text = str(annotation)
    if "int" in text:
        return int
    return float


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dialogue_runtime.sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--api-key", default=None, help="guards /v1/* (default: $VLLM_API_KEY, else none)")
    parser.add_argument("--tick-s", type=float, default=0.02, help="how often streaming requests get new tokens")
    parser.add_argument("--shutdown-timeout-s", type=float, default=30.0)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default", help="named queueing-model profile")
    for name, info in SimProfile.model_fields.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=_flag_type(info.annotation), default=None,
            help=f"{info.description or name} (default: the profile's, {info.default})",
        )  # fmt: skip
    return parser


def profile_from_args(args: argparse.Namespace) -> SimProfile:
    base = PROFILES[args.profile]
    overrides = {name: getattr(args, name) for name in SimProfile.model_fields if getattr(args, name) is not None}
    return SimProfile(**{**base.model_dump(), **overrides})


def serve(
    profile: SimProfile,
    *,
    host: str,
    port: int,
    served_model_name: str,
    max_model_len: int = 2048,
    api_key: str | None = None,
    tick_s: float = 0.02,
    shutdown_timeout_s: float = 30.0,
) -> None:
    """Run the simulated engine until SIGTERM/SIGINT (blocking)."""
    engine = SimEngine(profile, served_model_name, max_model_len=max_model_len, tick_s=tick_s)
    app = build_app(engine, api_key=api_key)
    print(f"sim engine: serving {served_model_name!r} on http://{host}:{port} ({profile})", flush=True)
    # handler_cancellation: a client that hangs up aborts its request, as in vLLM.
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=shutdown_timeout_s,
        print=None,
        access_log=None,
        handler_cancellation=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    serve(
        profile_from_args(args),
        host=args.host,
        port=args.port,
        served_model_name=args.served_model_name,
        max_model_len=args.max_model_len,
        api_key=args.api_key or os.environ.get("VLLM_API_KEY") or None,
        tick_s=args.tick_s,
        shutdown_timeout_s=args.shutdown_timeout_s,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
