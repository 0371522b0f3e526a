"""The operator's typed, frozen configuration, built once at start-up from the environment (pure)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from dialogue_runtime import contract

ENV_PREFIX = "DIALOGUE_OPERATOR_"


@dataclass(frozen=True)
class Settings:
    """Everything the builders and the shell need besides the DialogueModel itself."""

    runtime_image: str = f"{contract.IMAGE_RUNTIME}:{contract.IMAGE_TAG}"
    cluster_domain: str = "cluster.local"
    # Startup probe budget: large models load for tens of minutes; failureThreshold x period covers it. The
    # startup probe polls every 2 s so a pod that loads fast (a sim engine: ~1 s) is Ready at once, not 10 s later
    # (it matters for scale from zero); liveness keeps the 10 s period.
    startup_budget_s: int = 1800
    startup_probe_period_s: int = 2
    probe_period_s: int = 10
    termination_grace_s: int = 60
    # Who may reach runtime pods when spec.security.networkPolicy is on (any namespace).
    gateway_pod_labels: Mapping[str, str] = field(
        default_factory=lambda: {contract.LABEL_COMPONENT: contract.COMPONENT_GATEWAY}
    )
    operator_pod_labels: Mapping[str, str] = field(default_factory=lambda: {contract.LABEL_COMPONENT: "operator"})
    metrics_scraper_labels: Mapping[str, str] = field(default_factory=lambda: {"dialogue.dev/metrics-scraper": "true"})
    run_as_user: int = 1000
    resync_interval_s: float = 60.0
    workers: int = 4
    namespaces: tuple[str, ...] = ()  # namespaces to watch; empty watches all
    metrics_port: int = 8080
    # Address the metrics and health endpoints listen on: the pod IP in the chart (pods that share a network, as on
    # the local cluster's process-backed node, must not all claim 0.0.0.0).
    bind_address: str = "0.0.0.0"
    autoscale_interval_s: float = 10.0  # 0 turns the autoscaler loop off
    rollout_interval_s: float = 5.0  # rollout ticks (Jobs, canary, analysis); 0 turns the rollout loop off
    gateway_metrics_urls: tuple[str, ...] = ()  # gateway /metrics pages the autoscaler also scrapes
    # Autoscaling PolicyConfig overrides (windows, step limits): AUTOSCALE_POLICY=stable_window_s=10,...; for
    # experiments and end-to-end tests that cannot wait the default 10-minute scale-down window.
    autoscale_policy: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read DIALOGUE_OPERATOR_* variables (RUNTIME_IMAGE, RESYNC_INTERVAL_S, WORKERS, NAMESPACES=a,b, ...)."""
        source = os.environ if env is None else env

        def get(key: str) -> str | None:
            return source.get(ENV_PREFIX + key) or None

        base = cls()
        return cls(
            runtime_image=get("RUNTIME_IMAGE") or base.runtime_image,
            cluster_domain=get("CLUSTER_DOMAIN") or base.cluster_domain,
            startup_budget_s=int(get("STARTUP_BUDGET_S") or base.startup_budget_s),
            resync_interval_s=float(get("RESYNC_INTERVAL_S") or base.resync_interval_s),
            workers=int(get("WORKERS") or base.workers),
            namespaces=tuple(n.strip() for n in (get("NAMESPACES") or "").split(",") if n.strip()),
            metrics_port=int(get("METRICS_PORT") or base.metrics_port),
            bind_address=get("BIND_ADDRESS") or base.bind_address,
            autoscale_interval_s=float(get("AUTOSCALE_INTERVAL_S") or base.autoscale_interval_s),
            rollout_interval_s=float(get("ROLLOUT_INTERVAL_S") or base.rollout_interval_s),
            gateway_metrics_urls=tuple(u.strip() for u in (get("GATEWAY_METRICS_URLS") or "").split(",") if u.strip()),
            autoscale_policy=_numbers(ENV_PREFIX + "AUTOSCALE_POLICY", get("AUTOSCALE_POLICY") or ""),
        )


def _numbers(variable: str, text: str) -> dict[str, float]:
    """`name=number,...` -> {name: number} (an integer stays an int); ValueError naming the variable."""
    out: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, value = (x.strip() for x in item.partition("="))
        try:
            out[name] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            raise ValueError(f"{variable}: {item!r} is not NAME=NUMBER") from None
    return out
