"""The gateway's typed configuration, built once from the command line and passed in (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dialogue_runtime.gateway.balancer import DEFAULT_EPSILON
from dialogue_runtime.gateway.registry import RoutingMode
from dialogue_runtime.gateway.validation import Limits


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway process needs to know at start-up."""

    host: str = "0.0.0.0"
    port: int = 8080
    # Discovery: Kubernetes (kubeconfig file, or in-cluster when None) unless static models are given.
    kubeconfig: str | None = None
    namespace: str | None = None  # None: every namespace
    static_models: tuple[str, ...] = ()  # NAME=URL[,URL...]
    static_api_keys: tuple[str, ...] = ()  # NAME=KEY
    static_weights: tuple[str, ...] = ()  # NAME=VARIANT:WEIGHT[,VARIANT:WEIGHT...]
    static_history_budget: tuple[str, ...] = ()  # NAME=TOKENS
    tokenizers: tuple[str, ...] = ()  # NAME=PATH (tokenizer.json or a model folder)
    probe_interval_s: float = 1.0  # health probing of static endpoints
    resync_s: float = 60.0
    # Limits.
    limits: Limits = field(default_factory=Limits)
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    # Routing.
    epsilon: float = DEFAULT_EPSILON
    routing: RoutingMode = "affinity"  # least-load and round-robin exist as baselines for benchmarks
    eject_s: float = 5.0
    # Holding at zero.
    hold_timeout_s: float = 300.0
    max_held_per_model: int = 1000
    retry_after_s: int = 10
    notify_cooldown_s: float = 15.0
    # Upstream.
    connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 600.0
    # Sessions.
    redis_url: str | None = None
    session_ttl_s: int = 24 * 3600
    session_lock_timeout_s: float = 600.0
    # Logging of prompt and completion text (off unless asked for).
    log_content: bool = False
