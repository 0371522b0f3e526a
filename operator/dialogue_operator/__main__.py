"""Runs the operator: `python -m dialogue_operator` (kopf; all namespaces, or $DIALOGUE_OPERATOR_NAMESPACES)."""

from __future__ import annotations

import asyncio
import logging
import os

import kopf

import dialogue_operator.handlers  # noqa: F401  (registers the handlers)
from dialogue_operator.settings import ENV_PREFIX, Settings


def main() -> None:
    logging.basicConfig(level=os.environ.get(ENV_PREFIX + "LOG_LEVEL", "INFO"))
    namespaces = Settings.from_env().namespaces
    health_port = os.environ.get(ENV_PREFIX + "HEALTH_PORT", "8081")
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=True,
            liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz" if health_port != "0" else None,
        )
    )


if __name__ == "__main__":
    main()
