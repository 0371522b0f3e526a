"""dialogue_runtime: the data plane: runtime engine entrypoint, gateway, simulated engine, compression jobs."""

__version__ = "0.1.0"
