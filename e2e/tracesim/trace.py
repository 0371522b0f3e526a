"""Reading request traces shaped like the Azure LLM inference traces (`TIMESTAMP,ContextTokens,GeneratedTokens`)."""

from __future__ import annotations

import csv
import datetime as dt
import os
import random
from dataclasses import dataclass
from pathlib import Path

SHARED_DIR = Path(os.environ.get("DIALOGUE_SHARED_DIR", str(Path(__file__).resolve().parents[3] / "shared")))
TRACES_DIR = SHARED_DIR / "data" / "traces" / "azure2023"


@dataclass(frozen=True)
class TraceRequest:
    """One request: when it arrives (seconds from the trace start) and its token counts."""

    arrival_s: float
    prompt_tokens: int
    output_tokens: int


def azure_trace_path(name: str) -> Path:
    """The shared Azure 2023 trace `conv` or `code`."""
    return TRACES_DIR / f"AzureLLMInferenceTrace_{name}.csv"


def load_trace(
    path: Path, *, rate_scale: float = 1.0, token_scale: float = 1.0, duration_s: float | None = None
) -> list[TraceRequest]:
    """Requests of a CSV trace, times relative to its first request, sorted.

    `rate_scale` > 1 compresses time (more requests per second), `token_scale` multiplies both token counts
    (at least 1 each), `duration_s` keeps only requests arriving within that many seconds of the (scaled) start.
    """
    if rate_scale <= 0 or token_scale <= 0:
        raise ValueError(f"rate_scale and token_scale must be > 0, got {rate_scale}, {token_scale}")
    rows: list[tuple[float, int, int]] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: trace lacks columns {sorted(missing)}")
        for line_no, row in enumerate(reader, start=2):
            try:
                ts = dt.datetime.fromisoformat(row["TIMESTAMP"]).timestamp()
                rows.append((ts, int(row["ContextTokens"]), int(row["GeneratedTokens"])))
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: bad trace row {row!r}: {exc}") from exc
    if not rows:
        return []
    rows.sort()
    start = rows[0][0]
    out = [
        TraceRequest(
            arrival_s=(ts - start) / rate_scale,
            prompt_tokens=max(1, round(p * token_scale)),
            output_tokens=max(1, round(o * token_scale)),
        )
        for ts, p, o in rows
    ]
    if duration_s is not None:
        out = [r for r in out if r.arrival_s < duration_s]
    return out


def thin(trace: list[TraceRequest], keep: float, seed: int) -> list[TraceRequest]:
    """A random subset keeping each request with probability `keep` (same seed, same subset)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    rnd = random.Random(seed)
    return [r for r in trace if rnd.random() < keep]
