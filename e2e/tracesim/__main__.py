"""Command line: replay any `TIMESTAMP,ContextTokens,GeneratedTokens` CSV under every policy, print a table."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from e2e.tracesim.compare import Setup, replay_all, sim_config, table
from e2e.tracesim.follower import FOLLOWER, follower_points, minute_needs
from e2e.tracesim.sweep import best_setting
from e2e.tracesim.trace import load_trace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.tracesim", description=__doc__)
    parser.add_argument("trace", type=Path, help="CSV with columns TIMESTAMP,ContextTokens,GeneratedTokens")
    parser.add_argument("--rate-scale", type=float, default=1.0, help=">1 compresses time (more requests/s)")
    parser.add_argument("--token-scale", type=float, default=1.0, help="multiplies prompt and output tokens")
    parser.add_argument("--duration-s", type=float, default=None, help="replay only this much of the trace")
    parser.add_argument("--cold-start-s", type=float, default=Setup.cold_start_s)
    parser.add_argument("--slo-ttft-p95-s", type=float, default=Setup.slo_ttft_p95_s)
    parser.add_argument("--max-replicas", type=int, default=Setup.max_replicas)
    parser.add_argument(
        "--no-search", action="store_true", help="skip the hindsight oracle search (compare to the heuristic oracle)"
    )
    parser.add_argument(
        "--follower",
        action="store_true",
        help="also replay the causal reference that knows every finished minute's exact need (a minute or two)",
    )
    args = parser.parse_args(argv)
    try:
        trace = load_trace(
            args.trace, rate_scale=args.rate_scale, token_scale=args.token_scale, duration_s=args.duration_s
        )
    except (OSError, ValueError) as exc:
        print(f"tracesim: {exc}", file=sys.stderr)
        return 2
    if not trace:
        print(f"tracesim: {args.trace} holds no requests", file=sys.stderr)
        return 2
    setup = replace(
        Setup(), cold_start_s=args.cold_start_s, slo_ttft_p95_s=args.slo_ttft_p95_s, max_replicas=args.max_replicas
    )
    print(f"{len(trace)} requests over {trace[-1].arrival_s / 60:.1f} min, cold start {setup.cold_start_s:g} s, "
          f"SLO TTFT p95 <= {setup.slo_ttft_p95_s:g} s\n")  # fmt: skip
    comparison = replay_all(trace, setup, search=not args.no_search)
    print(table(comparison))
    if comparison.infeasible_minutes:
        print(f"\nMinutes no replica plan keeps in SLO (infeasible): {list(comparison.infeasible_minutes)}")
    if args.follower:
        config = sim_config(setup, comparison.need)
        points = follower_points(trace, config, minute_needs(trace, config, setup.max_replicas))
        best, reached = best_setting(points, FOLLOWER, 0.99)
        r, ref = best.result, comparison.results[-1]
        print(
            f"\n{FOLLOWER} ({best.setting}; {'reaches' if reached else 'best attainment, does not reach'} 99 %): "
            f"{r.minutes_in_slo}/{r.minutes_with_requests} minutes in SLO, {r.replica_hours:.2f} replica-hours, "
            f"{r.replica_hours / ref.replica_hours:.2f}x {ref.policy}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
