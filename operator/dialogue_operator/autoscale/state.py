"""The policy's memory between ticks, serializable into the DialogueModel status (pure data)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class PolicyState(BaseModel):
    """Windows and timers the policy needs across decisions; survives an operator restart via status.

    `load_samples` are (time_s, in-flight) pairs inside the stable window; `recommendations` are
    (time_s, replicas) pairs inside the scale-down stabilization window; `last_spike_s` dates the last load
    spike (it decides whether TTFT-guard additions are kept as a burst reserve); `target_scale` multiplies the
    per-replica target on steady traffic (see `PolicyConfig.ttft_setpoint_ratio`). Times are the caller's clock
    (monotonic or epoch seconds: the policy only subtracts them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)

    load_samples: tuple[tuple[float, float], ...] = ()
    recommendations: tuple[tuple[float, int], ...] = ()
    last_active_s: float | None = None
    panic_until_s: float | None = Field(default=None, description="Panic mode lasts until this time.")
    last_scale_s: float | None = None
    last_scale_up_s: float | None = Field(
        default=None, description="When the policy last asked for more replicas (replicas still starting are kept)."
    )
    last_spike_s: float | None = Field(
        default=None, description="When the load last spiked (or panic began): the traffic counts as bursty."
    )
    target_scale: float = Field(
        default=1.0,
        ge=1.0,
        description="Multiplier of the per-replica target learned from TTFT on steady traffic (>= 1).",
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with camelCase keys (what status holds)."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PolicyState:
        """Inverse of `to_dict`; None or {} gives a fresh state."""
        return cls.model_validate(data or {})
