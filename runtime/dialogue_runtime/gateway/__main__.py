"""Command line of the gateway: `python -m dialogue_runtime.gateway [--static-model NAME=URL ...] [...]`.

Without `--static-model` it discovers DialogueModels and their runtime Pods from Kubernetes (`--kubeconfig`, or
in-cluster configuration), in `--namespace` or every namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from dialogue_runtime.gateway.app import serve
from dialogue_runtime.gateway.settings import GatewaySettings
from dialogue_runtime.gateway.validation import Limits


def make_parser() -> argparse.ArgumentParser:
    d = GatewaySettings()
    p = argparse.ArgumentParser(prog="python -m dialogue_runtime.gateway", description=__doc__)
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster configuration)")
    p.add_argument("--namespace", default=None, help="watch one namespace (default: all)")
    p.add_argument(
        "--static-model",
        action="append",
        default=[],
        metavar="NAME=[VARIANT@]URL[,...]",
        help="serve a model from fixed engine URLs (no Kubernetes); repeatable",
    )
    p.add_argument(
        "--static-api-key",
        action="append",
        default=[],
        metavar="NAME=KEY[,KEY]",
        help="API keys of a static model (visible in the process list: for tests and development)",
    )
    p.add_argument("--static-weights", action="append", default=[], metavar="NAME=VARIANT:W[,VARIANT:W]")
    p.add_argument("--static-history-budget", action="append", default=[], metavar="NAME=TOKENS")
    p.add_argument(
        "--tokenizer",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="tokenizer.json or model folder used to count a model's history tokens",
    )
    p.add_argument("--probe-interval-s", type=float, default=d.probe_interval_s)
    p.add_argument("--resync-s", type=float, default=d.resync_s)
    p.add_argument("--redis-url", default=None, help="redis://host:port/db for sessions shared by replicas")
    p.add_argument("--session-ttl-s", type=int, default=d.session_ttl_s)
    p.add_argument("--max-body-bytes", type=int, default=d.limits.max_body_bytes)
    p.add_argument("--max-messages", type=int, default=d.limits.max_messages)
    p.add_argument("--max-tokens-cap", type=int, default=d.limits.max_tokens_cap)
    p.add_argument("--requests-per-minute", type=int, default=0, help="per API key; 0 = unlimited")
    p.add_argument("--tokens-per-minute", type=int, default=0, help="per API key; 0 = unlimited")
    p.add_argument("--epsilon", type=float, default=d.epsilon, help="bounded-load slack: bound = (1+eps) x mean")
    p.add_argument(
        "--routing",
        choices=["affinity", "least-load", "round-robin"],
        default=d.routing,
        help="endpoint choice; the default 'affinity' is CHWBL, the others are benchmark baselines",
    )
    p.add_argument("--hold-timeout-s", type=float, default=d.hold_timeout_s)
    p.add_argument("--max-held-per-model", type=int, default=d.max_held_per_model)
    p.add_argument("--upstream-read-timeout-s", type=float, default=d.upstream_read_timeout_s)
    p.add_argument("--log-content", action="store_true", help="log prompts (off by default)")
    p.add_argument("--log-level", default="INFO")
    return p  # fmt: skip


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    return GatewaySettings(
        host=args.host,
        port=args.port,
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        static_models=tuple(args.static_model),
        static_api_keys=tuple(args.static_api_key),
        static_weights=tuple(args.static_weights),
        static_history_budget=tuple(args.static_history_budget),
        tokenizers=tuple(args.tokenizer),
        probe_interval_s=args.probe_interval_s,
        resync_s=args.resync_s,
        redis_url=args.redis_url,
        session_ttl_s=args.session_ttl_s,
        limits=Limits(args.max_body_bytes, args.max_messages, args.max_tokens_cap),
        requests_per_minute=args.requests_per_minute,
        tokens_per_minute=args.tokens_per_minute,
        epsilon=args.epsilon,
        routing=args.routing,
        hold_timeout_s=args.hold_timeout_s,
        max_held_per_model=args.max_held_per_model,
        upstream_read_timeout_s=args.upstream_read_timeout_s,
        log_content=args.log_content,
    )


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    except ValueError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
