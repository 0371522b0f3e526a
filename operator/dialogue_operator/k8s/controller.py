"""The reconcile shell: reads the caches, runs the pure reconcile, applies children, writes status (I/O layer)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from dialogue_operator.k8s.api import KubeApi, KubeError
from dialogue_operator.k8s.autoscaler import AutoscalerShell
from dialogue_operator.k8s.informer import Informer, InformerGroup, ModelKey, pod_summary
from dialogue_operator.k8s.nodes import GpuProducts
from dialogue_operator.k8s.references import missing_references
from dialogue_operator.k8s.resources import CHILD_RESOURCES, POD
from dialogue_operator.k8s.rollout import RolloutShell
from dialogue_operator.metrics import OperatorMetrics
from dialogue_operator.reconcile import InvalidSpec, ModelObject, Observed, reconcile
from dialogue_operator.reconcile.conditions import worst_problem
from dialogue_operator.reconcile.core import invalid_status, status_dict
from dialogue_operator.reconcile.gpu_products import needs_products
from dialogue_operator.reconcile.served_name import ServedNameClaim, conflict_message, served_name_holder
from dialogue_operator.settings import Settings
from dialogue_operator.workqueue import WorkQueue

logger = logging.getLogger(__name__)

# Status keys other controllers (autoscaler, rollout) own: never overwritten by the reconcile's status patch.
FOREIGN_STATUS_KEYS = ("autoscaling", "rollout")
SYNC_TIMEOUT_S = 300.0
WeightsProvider = Callable[[ModelObject], Mapping[str, int] | None]


def _newer(candidate: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Whether `candidate` is at least as new as `current` (resourceVersions are etcd revisions in practice)."""
    if current is None:
        return True
    try:
        return int(candidate["metadata"]["resourceVersion"]) >= int(current["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return True


class Controller:
    """Owns the model cache, the child informers, the work queue and its workers."""

    def __init__(
        self,
        api: KubeApi,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        weights: WeightsProvider | None = None,
        autoscaler: AutoscalerShell | None = None,
        *,
        rollout: RolloutShell | None = None,
    ) -> None:
        self.api = api
        self.settings = settings
        self._clock = clock
        self._gpu_products = GpuProducts(api)
        self._weights = weights
        self._autoscaler = autoscaler
        self._rollout = rollout
        self.models: dict[ModelKey, dict[str, Any]] = {}
        self.queue: WorkQueue[ModelKey] = WorkQueue()
        scopes: tuple[str | None, ...] = settings.namespaces or (None,)
        self.informers = {
            kind: InformerGroup([Informer(api, resource, self.queue.add, ns) for ns in scopes])
            for kind, resource in CHILD_RESOURCES.items()
        }
        self.pods = InformerGroup([Informer(api, POD, self.queue.add, ns, summarize=pod_summary) for ns in scopes])
        self.metrics = OperatorMetrics(self.condition_counts, lambda: dict(api.mutations))
        self._failures: Counter[ModelKey] = Counter()
        self._tasks: list[asyncio.Task[None]] = []

    # -- cache fed by kopf's DialogueModel events ------------------------------------------------------------
    def model_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Record a DialogueModel watch event and queue its reconcile."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        # Models sharing its served name (before or after this event) may win or lose the name now.
        served = {ServedNameClaim.from_body(b).served_name for b in (body, self.models.get(key)) if b is not None}
        for peer in self._served_name_peers(key, served):
            self.queue.add(peer)
        if event_type == "DELETED":
            self.models.pop(key, None)
            if self._autoscaler is not None:
                self._autoscaler.forget(*key)
            if self._rollout is not None:
                self._rollout.forget(*key)
            return
        if _newer(body, self.models.get(key)):
            self.models[key] = body
        self.queue.add(key)

    def _served_name_peers(self, key: ModelKey, served: set[str]) -> list[ModelKey]:
        """The other models of `key`'s namespace that claim one of these served names."""
        return sorted(
            other
            for other, body in self.models.items()
            if other[0] == key[0] and other != key and ServedNameClaim.from_body(body).served_name in served
        )

    def served_name_conflict(self, key: ModelKey, body: dict[str, Any]) -> str | None:
        """Why an older model of the namespace holds this model's served name, or None when it holds it."""
        claim = ServedNameClaim.from_body(body)
        peers = [ServedNameClaim.from_body(self.models[k]) for k in self._served_name_peers(key, {claim.served_name})]
        holder = served_name_holder(claim, peers)
        return None if holder is None else conflict_message(claim, holder)

    def condition_counts(self) -> dict[tuple[str, str, str], int]:
        """Models by (condition, status, reason), for the models gauge."""
        counts: Counter[tuple[str, str, str]] = Counter()
        for body in self.models.values():
            for cond in (body.get("status") or {}).get("conditions") or []:
                counts[(str(cond.get("type")), str(cond.get("status")), str(cond.get("reason")))] += 1
        return dict(counts)

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the informers, wait for their first LIST, then start workers and the resync loop."""
        informers = [i for group in [*self.informers.values(), self.pods] for i in group.members]
        for informer in informers:
            self._tasks.append(asyncio.create_task(informer.run(), name=f"informer-{informer.resource.plural}"))
        try:
            await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), SYNC_TIMEOUT_S)
        except TimeoutError:
            missing = sorted({i.resource.plural for i in informers if not i.synced.is_set()})
            raise RuntimeError(f"could not list {', '.join(missing)} within {SYNC_TIMEOUT_S:.0f} s (RBAC?)") from None
        for n in range(self.settings.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"reconcile-worker-{n}"))
        self._tasks.append(asyncio.create_task(self._resync(), name="resync"))
        if self._autoscaler is not None and self.settings.autoscale_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._autoscale(self._autoscaler), name="autoscaler"))
        if self._rollout is not None and self.settings.rollout_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._roll_out(self._rollout), name="rollout"))

    async def stop(self) -> None:
        """Cancel every task the controller started."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_interval_s)
            for key in list(self.models):
                self.queue.add(key)

    async def _autoscale(self, shell: AutoscalerShell) -> None:
        """Every interval, one autoscaler tick per model with autoscaling on (it writes status.autoscaling; the
        model's watch event then brings the new desiredReplicas to the reconcile)."""
        limit = asyncio.Semaphore(8)

        async def tick(body: dict[str, Any]) -> None:
            async with limit:
                try:
                    await shell.tick(body, time.time())
                except Exception:  # one model's failed tick must not stop the loop for the others
                    meta = body.get("metadata") or {}
                    logger.exception("autoscaler tick of %s/%s failed", meta.get("namespace"), meta.get("name"))

        while True:
            await asyncio.sleep(self.settings.autoscale_interval_s)
            bodies = [b for b in self.models.values() if ((b.get("spec") or {}).get("autoscaling") or {})]
            await asyncio.gather(*(tick(b) for b in bodies))

    async def _roll_out(self, shell: RolloutShell) -> None:
        """Every interval, one rollout tick per model with a rollout (it writes status.rollout; the model's watch
        event then brings the new weights to the reconcile, which creates or removes the variants' Deployments)."""
        while True:
            await asyncio.sleep(self.settings.rollout_interval_s)
            for body in [b for b in self.models.values() if shell.wanted(b)]:
                if (body.get("metadata") or {}).get("deletionTimestamp"):
                    continue
                try:
                    await shell.tick(body, time.time())
                except Exception:  # one model's failed tick must not stop the loop for the others
                    meta = body.get("metadata") or {}
                    logger.exception("rollout tick of %s/%s failed", meta.get("namespace"), meta.get("name"))

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            started = time.monotonic()
            try:
                await self.reconcile_key(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a worker must survive any one model's failure; it is retried with back-off
                self._failures[key] += 1
                delay_s = min(60.0, 0.5 * 2 ** self._failures[key])
                log = logger.warning if isinstance(exc, KubeError) else logger.exception
                log("reconcile of %s/%s failed (retry in %.1f s): %s", *key, delay_s, exc)
                self.metrics.reconcile_errors.labels(type(exc).__name__).inc()
                self.queue.add_after(key, delay_s)
            finally:
                self.metrics.reconcile_duration.observe(time.monotonic() - started)
                self.queue.done(key)

    # -- one reconcile ---------------------------------------------------------------------------------------
    def observe(self, key: ModelKey) -> Observed:
        """The children and pods of one model, from the caches."""
        children = {
            (kind, name): obj
            for kind, informer in self.informers.items()
            for name, obj in informer.objects(key).items()
        }
        return Observed(children=children, pods=tuple(self.pods.objects(key).values()))

    async def reconcile_key(self, key: ModelKey) -> None:
        """Reconcile one DialogueModel: apply what differs, delete what is no longer wanted, write status."""
        body = self.models.get(key)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            # Deleted or being deleted (foreground): the garbage collector removes the children through their
            # owner references; re-applying them now would keep a foreground deletion waiting forever.
            return
        now = self._clock()
        try:
            model = ModelObject.from_body(body)
        except InvalidSpec as exc:
            _, _, _, generation = ModelObject.identity(body)
            previous = ModelObject.parse_status(body)
            status = status_dict(invalid_status(previous, generation, str(exc), now))
            if status != status_dict(previous):
                await self._write_status(key, body, status)
                await self.api.post_event(body, "Warning", "InvalidSpec", str(exc))
            self.metrics.reconcile_errors.labels("InvalidSpec").inc()
            return
        observed = dataclasses.replace(self.observe(key), missing=await missing_references(self.api, model))
        if needs_products(worst_problem(observed.pods), model.spec.resources.gpu_product):
            observed = dataclasses.replace(observed, gpu_products=await self._gpu_products())
        plan = reconcile(
            model,
            observed,
            self.settings,
            now,
            self._weights(model) if self._weights else None,
            served_name_conflict=self.served_name_conflict(key, body),
        )
        # Children are independent of each other except that pods read their ConfigMap: Deployments go last.
        deployments = [o for o in plan.apply if o["kind"] == "Deployment"]
        others = [o for o in plan.apply if o["kind"] != "Deployment"]
        for batch in (others, deployments):
            for applied in await asyncio.gather(*(self.api.apply(obj) for obj in batch)):
                self.informers[applied.get("kind", "")].put(applied)
        if plan.apply:
            names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in plan.apply)
            logger.info("DialogueModel %s/%s: applied %s", model.namespace, model.name, names)
        for kind, name in plan.delete:
            await self.api.delete(kind, model.namespace, name)
            logger.info("DialogueModel %s/%s: deleted %s/%s", model.namespace, model.name, kind, name)
        if plan.status_changed:
            await self._write_status(key, body, plan.status)
        for note in plan.events:
            logger.info("DialogueModel %s/%s: %s: %s", model.namespace, model.name, note.reason, note.message)
            await self.api.post_event(body, note.type, note.reason, note.message)

    async def _write_status(self, key: ModelKey, body: dict[str, Any], status: dict[str, Any]) -> None:
        patch = {k: v for k, v in status.items() if k not in FOREIGN_STATUS_KEYS}
        await self.api.patch_status(key[0], key[1], patch)
        current = self.models.get(key)
        if current is not None:
            merged = {**(current.get("status") or {}), **patch}
            self.models[key] = {**current, "status": merged}
