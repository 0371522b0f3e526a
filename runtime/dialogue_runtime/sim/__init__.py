"""A simulated engine (for scale tests and benchmarks only) with vLLM's API and metrics."""
