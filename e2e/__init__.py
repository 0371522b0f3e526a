"""End-to-end tooling: the local cluster, environment setup, the demo and the benchmarks."""
