"""Runs the operator: `python -m dialogue_operator` (kopf; all namespaces, or $DIALOGUE_OPERATOR_NAMESPACES)."""

from __future__ import annotations

import asyncio
import logging
import os

import kopf

import dialogue_operator.handlers  # noqa: F401  (registers the handlers)
from dialogue_operator.settings import ENV_PREFIX, Settings


def main() -> None:
    level = logging.getLevelName(os.environ.get(ENV_PREFIX + "LOG_LEVEL", "INFO"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kopf logs every handled watch event at INFO; the controller logs what it changes instead.
    quiet = max(logging.WARNING, level if isinstance(level, int) else 0)
    logging.getLogger("kopf.objects").setLevel(quiet)
    logging.getLogger("aiohttp.access").setLevel(quiet)  # the liveness probe, every 20 s
    settings = Settings.from_env()
    namespaces = settings.namespaces
    health_port = os.environ.get(ENV_PREFIX + "HEALTH_PORT", "8081")
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=True,
            liveness_endpoint=f"http://{settings.bind_address}:{health_port}/healthz" if health_port != "0" else None,
        )
    )


if __name__ == "__main__":
    main()
