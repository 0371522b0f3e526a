"""Benchmarks: `make bench` runs every `bench_*.py` module here and writes BENCHMARKS.md.

Each module defines `TITLE: str` and `run() -> str`, which measures and returns a Markdown section
(tables with the load and a side-by-side comparison measured in the same run).
"""
