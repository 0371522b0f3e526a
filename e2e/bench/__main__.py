"""Runs the benchmark modules and writes BENCHMARKS.md with the machine they ran on."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import e2e.bench as bench_pkg

ROOT = Path(__file__).resolve().parents[2]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, no GPU; commit {commit or 'uncommitted'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("only", nargs="*", help="module names (bench_x) to run; default: all")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    names = sorted(m.name for m in pkgutil.iter_modules(bench_pkg.__path__) if m.name.startswith("bench_"))
    if args.only:
        names = [n for n in names if n in args.only]
    sections: list[str] = []
    failed = 0
    for name in names:
        module = importlib.import_module(f"e2e.bench.{name}")
        print(f"bench: {name} ...", flush=True)
        started = time.monotonic()
        try:
            body = module.run()
        except Exception:  # a failed benchmark is reported, the others still run
            failed += 1
            body = "Failed in this run:\n\n```\n" + traceback.format_exc(limit=5) + "```\n"
        sections.append(f"## {module.TITLE}\n\n{body.strip()}\n\n_({time.monotonic() - started:.0f} s)_\n")
    header = (
        "# Benchmarks\n\nWritten by `make bench` on "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.\n\n"
        f"Machine: {machine()}.\n\nThese machines are noisy: compare the figures measured side by side in one "
        "run (the ratios), not absolute times across runs.\n\n"
    )
    Path(args.out).write_text(header + "\n".join(sections))
    print(f"bench: wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
