"""The local Kubernetes cluster: binaries built from source, a harness to run them, simulated GPU nodes."""
