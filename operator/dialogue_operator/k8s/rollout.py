"""The rollout's shell: for one DialogueModel with spec.rollout, observe, run the pure state machine, act (I/O layer).

Per tick it observes the target variant's compression and evaluation Jobs (and their pods' termination
messages), the canary's runtime pods (Ready, crash-looping) and, when gateway `/metrics` URLs are configured,
the per-variant request, 5xx and TTFT counters; it calls `rollout.step`, server-side applies the Jobs the
machine asks for (owned by the DialogueModel), writes `status.rollout` (a merge patch the reconcile never
overwrites) and posts one Event per transition.

Canary Deployments are not created here: the reconcile gives every variant named in `status.rollout.weights`
a Deployment and deletes the others, so `RemoveCanary`/`RemoveVariant` are carried out by publishing the
weights without that variant. Keep one shell per process: it remembers the state it wrote last, so a watch
event that has not arrived yet never replays a transition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialogue_runtime import contract
from pydantic import ValidationError

from dialogue_operator.api import BASE_VARIANT
from dialogue_operator.autoscale.collector import Fetch
from dialogue_operator.k8s.api import KubeError
from dialogue_operator.k8s.resources import POD, Resource
from dialogue_operator.reconcile.jobs import build_compression_job, build_evaluation_job, paths_as_written
from dialogue_operator.reconcile.model import InvalidSpec, ModelObject
from dialogue_operator.rollout import (
    ActionKind,
    EvaluationObservation,
    JobObservation,
    JobState,
    Observation,
    Phase,
    RolloutSpec,
    RolloutState,
    StepResult,
    VariantMetrics,
    new_state,
    step,
)
from dialogue_operator.rollout.from_api import rollout_spec
from dialogue_operator.rollout.gateway_metrics import variant_metrics
from dialogue_operator.rollout.observe import (
    as_written,
    canary_status,
    compression_observation,
    current_step,
    evaluation_observation,
    running_pod,
)

log = logging.getLogger(__name__)

JOB = Resource("Job", "batch/v1", "jobs")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPRESS_IMAGE = f"{contract.IMAGE_COMPRESS}:{contract.IMAGE_TAG}"
ROLLOUT_KEY = "rollout"
# Beside the machine's state, status.rollout keeps the last finished Jobs' outcome (the gate's numbers).
JOB_RESULT_KEYS = ("compression", "evaluation")
_NOT_SERVABLE_YET = (Phase.PENDING, Phase.COMPRESSING, Phase.EVALUATING)


class RolloutApi(Protocol):
    """What the shell needs from `KubeApi`."""

    async def list(self, resource: Resource, label_selector: str, namespace: str | None = None) -> dict[str, Any]: ...
    async def apply(self, obj: dict[str, Any], resource: Resource | None = None) -> dict[str, Any]: ...
    async def delete(self, kind: str, namespace: str, name: str, resource: Resource | None = None) -> None: ...
    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    async def post_event(self, model: dict[str, Any], type_: str, reason: str, message: str) -> None: ...
    async def read_log(self, namespace: str, pod: str, container: str, tail_lines: int = 40) -> str: ...


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning `old` into `new`: removed keys become null, dicts recurse."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif value != before or key not in old:
            patch[key] = value
    return patch


def published(result: StepResult) -> RolloutState:
    """The state as written: a variant the machine wants removed leaves the weights (so its Deployment goes), and
    so does a target still being compressed or evaluated (its pods would start without their weights)."""
    state = result.state
    removed = {a.variant for a in result.actions if a.kind in (ActionKind.REMOVE_CANARY, ActionKind.REMOVE_VARIANT)}
    if state.phase in _NOT_SERVABLE_YET and state.target_variant:
        removed.add(state.target_variant)
    weights = {v: w for v, w in state.weights.items() if v not in removed or w > 0}
    return state.model_copy(update={"weights": weights})


def job_results(stored: dict[str, Any], observation: Observation, state: RolloutState) -> dict[str, Any]:
    """`compression` and `evaluation` of status.rollout: a finished Job's outcome as observed, kept until a rollout
    of another target or revision starts."""
    same = (stored.get("targetVariant"), stored.get("revision")) == (state.target_variant, state.revision)
    out = {k: stored[k] for k in JOB_RESULT_KEYS if same and k in stored}
    for key, seen in (("compression", observation.compression), ("evaluation", observation.evaluation)):
        if seen.state in (JobState.SUCCEEDED, JobState.FAILED):
            out[key] = seen.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"step"})
        elif seen.state is JobState.RUNNING and seen.step:
            out[key] = {"state": JobState.RUNNING.value, "step": seen.step}  # the live step, for VariantReady
        elif (out.get(key) or {}).get("state") == JobState.RUNNING.value:
            del out[key]  # no longer running (or no longer looked at): no stale step
    return out


def status_of(state: RolloutState) -> dict[str, Any]:
    """`status.rollout` as stored: camelCase, unset fields left out."""
    return state.model_dump(mode="json", by_alias=True, exclude_none=True)


def machine_spec(model: ModelObject) -> RolloutSpec | None:
    """The machine's spec; pre-quantized sources are gated only on a pvc:// volume the evaluation Job can read."""
    rollout = model.spec.rollout
    variant = model.spec.variant(rollout.target_variant) if rollout is not None else None
    gate_source = variant is not None and variant.source is not None and variant.source.startswith("pvc://")
    return rollout_spec(model.spec, quality_gate_for_sources=gate_source)


@dataclass
class RolloutShell:
    """Per-process rollout I/O: the API adapter, the gateway scrape, the Jobs' image, the last written states."""

    api: RolloutApi
    fetch: Fetch
    gateway_urls: Sequence[str] = ()
    compress_image: str = COMPRESS_IMAGE
    timeout_s: float = 2.0
    _written: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted model's remembered state."""
        for key in [k for k in self._written if k[:2] == (namespace, name)]:
            del self._written[key]

    def wanted(self, body: dict[str, Any]) -> bool:
        """Whether the model has a rollout, or a rollout state to keep driving (removal aborts it)."""
        return bool((body.get("spec") or {}).get("rollout") or (body.get("status") or {}).get(ROLLOUT_KEY))

    def _previous(self, key: tuple[str, str, str], body: dict[str, Any]) -> tuple[dict[str, Any], RolloutState]:
        stored = self._written.get(key)
        if stored is None:
            stored = (body.get("status") or {}).get(ROLLOUT_KEY) or {}
        if stored:
            try:
                return stored, RolloutState.from_dict({k: v for k, v in stored.items() if k not in JOB_RESULT_KEYS})
            except ValidationError as exc:
                log.warning("rollout: %s/%s has an unreadable status.rollout, starting afresh: %s", key[0], key[1], exc)
        return stored, new_state(BASE_VARIANT)

    async def tick(self, body: dict[str, Any], now_s: float) -> StepResult | None:
        """One step of the model's rollout; None when it has none or its spec is invalid (the reconcile says why)."""
        if not self.wanted(body):
            return None
        try:
            model = ModelObject.from_body(body)
        except InvalidSpec:
            return None
        key = (model.namespace, model.name, model.uid)
        stored, state = self._previous(key, body)
        spec = machine_spec(model)
        if spec is None and not stored:
            return None
        target = spec.target_variant if spec is not None else state.target_variant
        observation, jobs = await self._observe(model, state, spec, target)
        result = step(state, observation, spec, now_s)
        for action in result.actions:
            job = jobs.get(action.kind)
            if job is not None and action.variant == target:
                await self._ensure_job(model, job)
        new = {**status_of(published(result)), **job_results(stored, observation, result.state)}
        if new != stored:
            await self.api.patch_status(model.namespace, model.name, {ROLLOUT_KEY: merge_patch(stored, new)})
            self._written[key] = new
        for event in result.events:
            log.info("rollout: %s/%s %s: %s", model.namespace, model.name, event.reason, event.message)
            await self.api.post_event(body, event.type, event.reason, event.message)
        return result

    async def _observe(
        self, model: ModelObject, state: RolloutState, spec: RolloutSpec | None, target: str | None
    ) -> tuple[Observation, dict[ActionKind, dict[str, Any]]]:
        """What the machine needs this tick, and the Jobs it may ask for (built only when it could)."""
        jobs: dict[ActionKind, dict[str, Any]] = {}
        compression, evaluation = JobObservation(), EvaluationObservation()
        restarting = spec is not None and (
            (state.target_variant, state.revision) != (target, spec.revision)
            or (state.phase is Phase.ABORTED and not spec.abort)
        )
        early = restarting or state.phase in (Phase.PENDING, Phase.COMPRESSING, Phase.EVALUATING)
        if not early and state.phase not in (Phase.CANARY, Phase.PAUSED):
            return Observation(), jobs  # finished: nothing to look at
        if spec is not None and target is not None and early:
            if spec.needs_compression:
                comp, job = await self._job(model, target, ActionKind.ENSURE_COMPRESSION_JOB)
                jobs.update(job)
                compression = JobObservation(state=comp.state, reason=comp.reason, message=comp.message, step=comp.step)
            if spec.quality_gate:
                ev, job = await self._job(model, target, ActionKind.ENSURE_EVALUATION_JOB)
                jobs.update(job)
                if isinstance(ev, EvaluationObservation):
                    evaluation = ev
        ready, looping, why = False, False, ""
        if target is not None and target != state.stable_variant:
            selector = ",".join(
                (
                    f"{contract.LABEL_COMPONENT}={contract.COMPONENT_RUNTIME}",
                    f"{contract.LABEL_MODEL}={model.name}",
                    f"{contract.LABEL_VARIANT}={target}",
                )
            )
            pods = (await self.api.list(POD, selector, model.namespace)).get("items") or []
            live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
            ready, looping, why = canary_status(live)
        metrics = await self._metrics(model)
        observation = Observation(
            compression=compression,
            evaluation=evaluation,
            canary_ready=ready,
            canary_crash_looping=looping,
            canary_message=why,
            metrics=metrics,
        )
        return observation, jobs

    async def _job(
        self, model: ModelObject, variant: str, kind: ActionKind
    ) -> tuple[JobObservation | EvaluationObservation, dict[ActionKind, dict[str, Any]]]:
        """Observe the Job the spec asks for now (its name hashes its arguments); a recipe the builder refuses
        is a failed Job whose message quotes the reason."""
        compress = kind is ActionKind.ENSURE_COMPRESSION_JOB
        try:
            job = (build_compression_job if compress else build_evaluation_job)(model, variant, self.compress_image)
        except InvalidSpec as exc:
            failed = JobObservation if compress else EvaluationObservation
            return failed(state=JobState.FAILED, message=str(exc)), {}
        name = job["metadata"]["name"]
        labels = job["metadata"]["labels"]
        selector = ",".join(f"{k}={labels[k]}" for k in (contract.LABEL_MODEL, contract.LABEL_VARIANT))
        found = (await self.api.list(JOB, selector, model.namespace)).get("items") or []
        live = next((j for j in found if (j.get("metadata") or {}).get("name") == name), None)
        component = labels[contract.LABEL_COMPONENT]
        for stale in found:  # the same step for an older recipe or base: its Job (and its pods) go
            meta = stale.get("metadata") or {}
            if meta.get("name") != name and (meta.get("labels") or {}).get(contract.LABEL_COMPONENT) == component:
                await self.api.delete(JOB.kind, model.namespace, str(meta["name"]), JOB)
                log.info("rollout: %s/%s: deleted the stale Job/%s", model.namespace, model.name, meta["name"])
        pods: list[dict[str, Any]] = []
        if live is not None:
            pods = (await self.api.list(POD, f"{JOB_NAME_LABEL}={name}", model.namespace)).get("items") or []
        observed = compression_observation(live, pods) if compress else evaluation_observation(live, pods)
        if observed.state is JobState.RUNNING:  # its step names calibration/golden sets as the spec does too
            step = as_written(await self._step(model, pods, component), paths_as_written(model, variant))
            observed = observed.model_copy(update={"step": step})
        if observed.state is JobState.FAILED:  # name the calibration/golden set as the spec does, not the mount
            message = as_written(observed.message, paths_as_written(model, variant))
            observed = observed.model_copy(update={"message": message})
        return observed, ({kind: job} if live is None else {})  # a Job's template is immutable: apply it once

    async def _step(self, model: ModelObject, pods: list[dict[str, Any]], container: str) -> str:
        """The step a running Job's pod logs it is in ('' when it cannot be read: not started, or no `pods/log`)."""
        pod = running_pod(pods)
        if pod is None:
            return ""
        try:
            return current_step(await self.api.read_log(model.namespace, pod, container))
        except KubeError as exc:
            log.debug("rollout: %s/%s: cannot read the log of %s: %s", model.namespace, model.name, pod, exc)
            return ""

    async def _ensure_job(self, model: ModelObject, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        await self.api.apply(job, JOB)
        log.info("rollout: %s/%s: applied Job/%s", model.namespace, model.name, name)

    async def _metrics(self, model: ModelObject) -> dict[str, VariantMetrics] | None:
        """Per-variant gateway counters summed over every gateway page; None (unknown) if any page failed."""
        if not self.gateway_urls:
            return None
        try:
            pages = await asyncio.gather(
                *(asyncio.wait_for(self.fetch(url), self.timeout_s) for url in self.gateway_urls)
            )
        except Exception as exc:  # timeouts, HTTP errors, refused connections: no analysis this tick
            log.warning("rollout: gateway metrics unavailable for %s/%s: %s", model.namespace, model.name, exc)
            return None
        try:
            return variant_metrics(pages, model.namespace, model.name)
        except ValueError as exc:
            log.warning("rollout: unreadable gateway metrics for %s/%s: %s", model.namespace, model.name, exc)
            return None
