"""kopf wiring: thin handlers that feed the controller's cache and queue; nothing else lives here."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import kopf
from dialogue_runtime import contract
from prometheus_client import start_http_server

from dialogue_operator.api.serving import AutoscalingSpec
from dialogue_operator.autoscale import PolicyConfig
from dialogue_operator.k8s.api import KubeApi, connect
from dialogue_operator.k8s.autoscaler import AutoscalerShell
from dialogue_operator.k8s.controller import Controller
from dialogue_operator.k8s.metrics_fetch import aiohttp_fetch
from dialogue_operator.k8s.rollout import RolloutShell
from dialogue_operator.settings import Settings

logger = logging.getLogger(__name__)


@kopf.on.startup(id="start-controller")
async def start_controller(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build the controller from the environment, start its informers, workers and metrics endpoint."""
    config = Settings.from_env()
    settings.peering.standalone = True  # one replica (Recreate); no peering objects to write
    settings.posting.enabled = False  # Events are posted by the controller for transitions only
    # No runtime watch of CRDs and namespaces: it would need cluster-wide list/watch on both (least privilege);
    # the DialogueModel CRD is resolved once at start-up.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 240
    client = await connect()
    api = KubeApi(client)
    memo.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    PolicyConfig.from_spec(AutoscalingSpec(), **config.autoscale_policy)  # a bad override fails here, not per tick
    autoscaler = AutoscalerShell(
        api,
        aiohttp_fetch(memo.http),
        gateway_urls=config.gateway_metrics_urls,
        policy_overrides=dict(config.autoscale_policy),
    )
    rollout = RolloutShell(api, aiohttp_fetch(memo.http), gateway_urls=config.gateway_metrics_urls)
    controller = Controller(api, config, autoscaler=autoscaler, rollout=rollout)
    memo.client = client
    memo.controller = controller
    if config.metrics_port:
        memo.metrics_server = start_http_server(
            config.metrics_port, addr=config.bind_address, registry=controller.metrics.registry
        )
    await controller.start()
    logger.info("dialogue-operator started: %d workers, resync every %.0f s", config.workers, config.resync_interval_s)


@kopf.on.cleanup(id="stop-controller")
async def stop_controller(memo: kopf.Memo, **_: Any) -> None:
    """Stop workers and informers, close the API client and the metrics endpoint."""
    await memo.controller.stop()
    await memo.client.close()
    await memo.http.close()
    server = memo.get("metrics_server")
    if server is not None:
        server[0].shutdown()


@kopf.on.event(contract.API_GROUP, contract.API_VERSION, contract.PLURAL, id="dialoguemodel-event")
async def dialoguemodel_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Every create, update (spec or status), resume (initial listing) and delete: cache it, queue a reconcile."""
    memo.controller.model_event(event.get("type"), dict(event["object"]))
