"""One pod's life on the process-backed node: sandbox (IP, volumes), containers, probes, restarts, status and
termination, driven by a thread that owns the pod (e2e layer)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from e2e.cluster import images
from e2e.cluster.podrunner import envvars, launch
from e2e.cluster.podrunner.backoff import CrashBackoff
from e2e.cluster.podrunner.container import (
    ContainerProcess,
    ContainerRun,
    Terminated,
    exit_code_of,
    now_iso,
    stop_all,
    termination_message,
)
from e2e.cluster.podrunner.context import HOST_IP, RunnerContext
from e2e.cluster.podrunner.hooks import pre_stop_spec, run_pre_stop_hooks
from e2e.cluster.podrunner.ipam import IPExhausted
from e2e.cluster.podrunner.kubeapi import ApiError
from e2e.cluster.podrunner.mounts import Mount, launch_argv
from e2e.cluster.podrunner.podapi import delete_now, object_source, patch_status
from e2e.cluster.podrunner.podstatus import grace_period_s, pod_phase, pod_status, with_runner_ips
from e2e.cluster.podrunner.prober import Prober
from e2e.cluster.podrunner.probes import CheckTarget
from e2e.cluster.podrunner.volumes import PodVolumes, VolumeError, memory_dir

log = logging.getLogger("podrunner")

TICK_S = 0.25
VOLUME_REFRESH_S = 30.0
DEFAULT_MESSAGE_PATH = "/dev/termination-log"


class PodWorker(threading.Thread):
    """Owns one pod (by uid) from its first sight until its object is deleted or the runner shuts down."""

    def __init__(self, ctx: RunnerContext, pod: Mapping[str, Any], host_env: Mapping[str, str]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.uid = str(meta["uid"])
        self.key = f"{meta['namespace']}/{meta['name']}"
        self._pod: Mapping[str, Any] = pod
        self._gone = False
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._host_env = {k: host_env[k] for k in images.HOST_ENV if k in host_env}
        self.pod_dir = ctx.pod_dir(pod)
        spec = pod.get("spec") or {}
        self.restart_policy = str(spec.get("restartPolicy") or "Always")
        self.init_runs = [ContainerRun(spec=c, is_init=True) for c in spec.get("initContainers") or []]
        self.runs = [ContainerRun(spec=c) for c in spec.get("containers") or []]
        previous = {s.get("name"): s for s in ((pod.get("status") or {}).get("containerStatuses") or [])}
        for run in self.runs:  # after a runner restart: the next start of a container that ran is a restart
            before = previous.get(run.name, {})
            run.restart_count = int(before.get("restartCount") or 0)
            run.last_terminated = Terminated.from_status(before)
            run.ever_started = bool(
                set(before.get("state") or {}) & {"running", "terminated"} or before.get("lastState")
            )
        for run in [*self.init_runs, *self.runs]:
            run.backoff = CrashBackoff(cap_s=ctx.backoff_cap_s)
            run.pull_backoff = CrashBackoff(cap_s=ctx.backoff_cap_s)
        self.pod_ip = ""
        self.start_time = ""
        self.sandbox_ready = False
        self.init_failed = False
        self.volumes = PodVolumes(ctx.client, self.pod_dir, ctx.state_dir, memory_dir(ctx.node_name, pod))
        self._volume_paths: dict[str, Path] = {}
        self._volumes_at = 0.0
        self.prober = Prober(ctx.probe_pool, lambda kind, reason, message: ctx.event(self.pod, kind, reason, message))
        self._last_status: dict[str, Any] | None = None
        self._phase = str((pod.get("status") or {}).get("phase") or "Pending")
        self._sandbox_message = ""

    # ---- called from the runner's watch thread -------------------------------------------------------------
    def update(self, pod: Mapping[str, Any]) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def object_deleted(self) -> None:
        self._gone = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def waiting_reason(self, name: str) -> str | None:
        """Why a container that never started is waiting (None once it ran)."""
        run = next((r for r in [*self.init_runs, *self.runs] if r.name == name), None)
        if run is None or run.ever_started:
            return None
        return run.waiting_reason or "ContainerCreating"

    def container_running(self, name: str) -> bool:
        return any(r.name == name and r.process is not None for r in [*self.init_runs, *self.runs])

    # ---- the pod's thread ----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # one bad pod must never take the node down: fail it, say why, stop its processes
            log.exception("pod %s: unexpected error", self.key)
            self._fail_pod(f"pod runner error: {exc!r}; {traceback.format_exc(limit=3)[-600:]}")
            self._stop_processes(0.0)
            while not (self._gone or self._deleting() or self.ctx.shutting_down.is_set()):
                self._wake.wait(5.0)
                self._wake.clear()
            if self._deleting():
                self._delete_object()
        finally:
            self._cleanup()

    def _loop(self) -> None:
        if self._phase in ("Succeeded", "Failed") and not self._deleting():
            log.info("pod %s is already %s; nothing to run", self.key, self._phase)
        while True:
            if self._gone or self._deleting() or self.ctx.shutting_down.is_set():
                self._terminate()
                return
            if self._phase not in ("Succeeded", "Failed"):
                self._sync()
                if self._phase in ("Succeeded", "Failed"):
                    self._release_ip()  # the sandbox of a finished pod is gone; its status keeps the IP
            self._wake.wait(TICK_S if self._phase not in ("Succeeded", "Failed") else 5.0)
            self._wake.clear()

    @property
    def pod(self) -> Mapping[str, Any]:
        with self._lock:
            return self._pod

    def _deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def _sync(self) -> None:
        pod = self.pod
        if not self.sandbox_ready:
            self._setup_sandbox(pod)
        elif time.monotonic() - self._volumes_at > VOLUME_REFRESH_S:
            self._refresh_volumes(pod)
        if self.sandbox_ready and self._run_init_containers(pod):
            for run in self.runs:
                self._sync_container(pod, run)
        elif self.sandbox_ready:
            for run in self.runs:  # what the kubelet shows for app containers while init containers run
                if not run.ever_started:
                    run.waiting_reason, run.waiting_message = "PodInitializing", ""
        self._publish(pod)

    def _setup_sandbox(self, pod: Mapping[str, Any]) -> None:
        if not self.pod_ip and (pod.get("spec") or {}).get("hostNetwork"):
            self.pod_ip = HOST_IP  # the node's own network: the pod IP is the host IP, nothing to allocate
            self.start_time = str((pod.get("status") or {}).get("startTime") or now_iso())
        if not self.pod_ip:
            previous_ip = str((pod.get("status") or {}).get("podIP") or "")
            try:
                with self.ctx.ipam_lock:
                    if not (previous_ip and self.ctx.ipam.reserve(self.uid, previous_ip)):
                        previous_ip = self.ctx.ipam.allocate(self.uid)
            except IPExhausted as exc:  # like a CNI failure: the sandbox waits until an address is free
                for run in [*self.init_runs, *self.runs]:
                    run.waiting_reason, run.waiting_message = "ContainerCreating", f"FailedCreatePodSandBox: {exc}"
                return
            self.pod_ip = previous_ip
            self.start_time = str((pod.get("status") or {}).get("startTime") or now_iso())
        with_ip = with_runner_ips(pod, self.pod_ip, HOST_IP)
        try:
            self._volume_paths = self.volumes.materialize(with_ip)
        except (VolumeError, ApiError, OSError) as exc:
            if str(exc) != self._sandbox_message:
                self.ctx.event(pod, "Warning", "FailedMount", str(exc))
                log.warning("pod %s: %s", self.key, exc)
            self._sandbox_message = str(exc)
            for run in [*self.init_runs, *self.runs]:
                run.waiting_reason, run.waiting_message = "ContainerCreating", str(exc)
            return
        self._volumes_at = time.monotonic()
        self.sandbox_ready = True
        for run in [*self.init_runs, *self.runs]:
            run.waiting_message = ""

    def _refresh_volumes(self, pod: Mapping[str, Any]) -> None:
        self._volumes_at = time.monotonic()
        try:
            self.volumes.materialize(with_runner_ips(pod, self.pod_ip, HOST_IP))
        except (VolumeError, ApiError, OSError) as exc:
            log.warning("pod %s: refreshing volumes: %s", self.key, exc)

    def _run_init_containers(self, pod: Mapping[str, Any]) -> bool:
        """Advance the init containers one step; True once all of them succeeded."""
        for run in self.init_runs:
            if run.terminated is not None and run.terminated.exit_code == 0:
                continue
            self._sync_container(pod, run)
            if run.terminated is not None and run.restart_at is None and run.terminated.exit_code != 0:
                self.init_failed = True
            return False
        return True

    # ---- containers ----------------------------------------------------------------------------------------
    def _sync_container(self, pod: Mapping[str, Any], run: ContainerRun) -> None:
        now = time.monotonic()
        if run.process is not None:
            code = run.process.poll()
            if code is None:
                failed = self.prober.step(run, self.pod_ip, now)
                if failed is not None:
                    self._kill(pod, run, f"failed {failed[0]} probe", failed[1].termination_grace_s)
                return
            self._on_exit(pod, run, exit_code_of(code))
        if run.restart_at is not None and now >= run.restart_at:
            self._start(pod, run)

    def _start(self, pod: Mapping[str, Any], run: ContainerRun) -> None:
        spec = run.spec
        context = launch.PodContext(
            pod=with_runner_ips(pod, self.pod_ip, HOST_IP),
            repo_root=self.ctx.repo_root,
            pod_dir=self.pod_dir,
            source=object_source(self.ctx.client),
            service_env=envvars.service_env(self.ctx.api_host, self.ctx.api_port),
            allocatable=self.ctx.allocatable,
            host_env=self._host_env,
            volume_paths=self._volume_paths,
        )
        try:
            plan = launch.plan(context, spec)
        except launch.LaunchError as exc:
            if exc.reason == "ErrImagePull":
                first = run.waiting_reason not in ("ErrImagePull", "ImagePullBackOff")
                run.waiting_reason, run.waiting_message = ("ErrImagePull" if first else "ImagePullBackOff"), str(exc)
                run.restart_at = time.monotonic() + max(run.pull_backoff.on_exit(0.0), 5.0)
                if first:
                    self.ctx.event(pod, "Warning", "Failed", f"Failed to pull image {spec.get('image')!r}: {exc}")
                return
            if run.waiting_message != str(exc):
                self.ctx.event(pod, "Warning", "Failed", f"Error: {exc}")
            run.waiting_reason, run.waiting_message = exc.reason, str(exc)
            run.restart_at = time.monotonic() + 2.0
            return
        container_dir = self.pod_dir / "containers" / run.name
        container_dir.mkdir(parents=True, exist_ok=True)
        message_file = container_dir / "termination-log"
        message_file.write_bytes(b"")
        message_path = Path(str(spec.get("terminationMessagePath") or DEFAULT_MESSAGE_PATH))
        mounts = list(plan.mounts)
        if run.ever_started:  # the kubelet counts a restart when it creates the next container
            run.restart_count += 1
        run.ever_started = True
        run.container_id = f"podrunner://{self.uid}/{run.name}/{run.restart_count}"
        run.image_id = plan.image.image_id
        run.running_since = now_iso()
        run.waiting_message = ""
        if plan.start_error:
            message = plan.start_error
            self.ctx.event(pod, "Warning", "Failed", f"Error: failed to start container {run.name!r}: {message}")
            self._on_exit(pod, run, 128, reason="StartError", message=message)
            return
        try:
            self.ctx.mount_points.acquire(f"{self.uid}/{run.name}", [Mount(message_file, message_path)])
            mounts.append(Mount(message_file, message_path))
        except OSError as exc:  # e.g. a read-only /dev: the container runs, only its termination message is lost
            log.warning("pod %s: no termination message file for %s: %s", self.key, run.name, exc)
        try:
            self.ctx.mount_points.acquire(f"{self.uid}/{run.name}", mounts)
            run.process = ContainerProcess(
                launch_argv(
                    mounts,
                    plan.workdir,
                    plan.argv,
                    workdir_on_host=plan.workdir_on_host,
                    keep_visible=(self.ctx.repo_root, images.cache_root()),
                ),
                plan.env,
                self._log_path(run),
                self.pod_dir,  # the launch script changes to the container's own working directory
                tag=f"{self.ctx.tag_prefix}{self.uid}/{run.name}/",
            )
        except OSError as exc:  # a mount point that cannot be created, a missing tool: this container fails
            self.ctx.event(pod, "Warning", "Failed", f"Error: failed to start container {run.name!r}: {exc}")
            self._on_exit(pod, run, 128, reason="StartError", message=f"failed to start: {exc}")
            return
        run.mount_env, run.workdir = plan.env, plan.workdir
        run.waiting_reason = ""
        run.terminated = None
        run.ready = False
        self.prober.reset(run)
        self.ctx.event(pod, "Normal", "Started", f"Started container {run.name}")
        log.info("pod %s: started container %s (pid %d): %s", self.key, run.name, run.process.pid, plan.argv)

    def _on_exit(
        self,
        pod: Mapping[str, Any],
        run: ContainerRun,
        exit_code: int,
        *,
        reason: str = "",
        message: str = "",
        final: bool = False,
    ) -> None:
        ran_for_s = time.monotonic() - run.process.started_mono if run.process is not None else 0.0
        container_dir = self.pod_dir / "containers" / run.name
        if not message:
            policy = str(run.spec.get("terminationMessagePolicy") or "File")
            message = termination_message(container_dir / "termination-log", self._log_path(run), exit_code, policy)
        result = Terminated(
            exit_code=exit_code,
            reason=reason or ("Completed" if exit_code == 0 else "Error"),
            message=message,
            started_at=run.running_since or now_iso(),
            finished_at=now_iso(),
            container_id=run.container_id,
        )
        run.process = None
        run.ready = run.started = False
        self.prober.drop(run)
        # The process's mount namespace is gone with it: the host paths it needed can go too.
        self.ctx.mount_points.release(f"{self.uid}/{run.name}")
        restart = not run.is_init and self.restart_policy == "Always"
        restart = restart or (self.restart_policy in ("Always", "OnFailure") and exit_code != 0)
        restart = restart and not final
        log.info("pod %s: container %s exited with %d (restart: %s)", self.key, run.name, exit_code, restart)
        if not restart:
            run.terminated, run.restart_at = result, None
            return
        run.last_terminated, run.terminated = result, None
        delay_s = run.backoff.on_exit(ran_for_s)
        run.restart_at = time.monotonic() + delay_s
        run.waiting_reason = "CrashLoopBackOff" if delay_s > 0 else "ContainerCreating"
        run.waiting_message = (
            f"back-off {delay_s:g}s restarting failed container={run.name} pod={pod['metadata']['name']}"
            f"_{pod['metadata']['namespace']}({self.uid})"
            if delay_s > 0
            else ""
        )
        if delay_s > 0:
            self.ctx.event(pod, "Warning", "BackOff", "Back-off restarting failed container " + run.name)

    def _kill(self, pod: Mapping[str, Any], run: ContainerRun, why: str, grace_s: float | None) -> None:
        if run.process is None:
            return
        self.ctx.event(pod, "Normal", "Killing", f"Container {run.name} {why}, will be restarted")
        grace = grace_s if grace_s is not None else grace_period_s(pod)
        process = run.process
        stop_all([process], grace)
        self._on_exit(pod, run, exit_code_of(process.popen.returncode or -9))

    # ---- helpers -------------------------------------------------------------------------------------------
    def _log_path(self, run: ContainerRun) -> Path:
        return self.pod_dir / f"{run.name}.log"

    # ---- status --------------------------------------------------------------------------------------------
    def _status(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        init_statuses = [r.status() for r in self.init_runs]
        statuses = [r.status() for r in self.runs]
        phase = pod_phase(self.restart_policy, init_statuses, statuses, self.init_failed)
        if self._phase == "Failed" and phase != "Failed":  # set by _fail_pod: stays
            phase = "Failed"
        self._phase = phase
        return pod_status(
            pod,
            phase=phase,
            init_statuses=init_statuses,
            statuses=statuses,
            sandbox_ready=self.sandbox_ready,
            pod_ip=self.pod_ip,
            host_ip=HOST_IP,
            start_time=self.start_time or now_iso(),
            now=now_iso(),
        )

    def _publish(self, pod: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> None:
        status = self._status(pod)
        if extra:
            status.update(extra)
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
        ]
        if comparable == self._last_status:
            return
        try:
            answer = patch_status(self.ctx.client, pod, status)
        except ApiError as exc:
            if exc.status == 404:
                self._gone = True
            elif exc.status != 409:
                log.warning("pod %s: status update failed: %s", self.key, exc)
            return
        self._last_status = comparable
        if answer.get("metadata", {}).get("uid") == self.uid:
            with self._lock:
                if int(answer["metadata"].get("resourceVersion", 0)) >= int(
                    self._pod["metadata"].get("resourceVersion", 0)
                ):
                    self._pod = answer

    def _fail_pod(self, message: str) -> None:
        self._phase = "Failed"
        for run in [*self.init_runs, *self.runs]:
            if run.process is None and run.terminated is None:
                run.restart_at = None
                run.terminated = Terminated(128, "RunnerError", message[:1024], now_iso(), now_iso(), "")
        with contextlib.suppress(Exception):
            self._publish(self.pod, {"reason": "PodRunnerError", "message": message[:1024]})

    # ---- termination ---------------------------------------------------------------------------------------
    def _terminate(self) -> None:
        pod = self.pod
        shutdown = self.ctx.shutting_down.is_set() and not self._deleting() and not self._gone
        grace_s = grace_period_s(pod)
        if shutdown:
            grace_s = min(grace_s, self.ctx.shutdown_grace_s)
        if any(r.process is not None for r in [*self.init_runs, *self.runs]):
            self.ctx.event(pod, "Normal", "Killing", f"Stopping the pod's containers (grace {grace_s:g}s)")
        # At a runner shutdown the containers stop as if they had crashed: the next runner on this node restarts
        # them (restartPolicy permitting) under the same pod and IP, as after a kubelet restart.
        self._stop_processes(grace_s, final=not shutdown)
        if self._gone:
            return
        with contextlib.suppress(Exception):
            self._publish(pod)
        if not shutdown:
            self._delete_object()

    def _stop_processes(self, grace_s: float, *, final: bool = True) -> None:
        runs = [r for r in [*self.init_runs, *self.runs] if r.process is not None]
        processes = [r.process for r in runs if r.process is not None]
        hooks = []
        for run in runs:
            hook = pre_stop_spec(run.spec, grace_s)
            if hook is not None and run.process is not None and grace_s > 0:
                hooks.append((hook, CheckTarget(self.pod_ip, run.process.pid, run.mount_env, run.workdir)))
        if hooks:
            grace_s -= run_pre_stop_hooks(hooks, grace_s)
        stop_all(processes, grace_s)
        for run in runs:
            code = run.process.popen.returncode if run.process is not None else None
            self._on_exit(self.pod, run, exit_code_of(code if code is not None else -9), final=final)

    def _delete_object(self) -> None:
        try:
            delete_now(self.ctx.client, self.pod)
        except ApiError as exc:
            log.warning("pod %s: final delete failed: %s", self.key, exc)

    def _release_ip(self) -> None:
        with self.ctx.ipam_lock:
            self.ctx.ipam.release(self.uid)

    def _cleanup(self) -> None:
        self._release_ip()
        for run in [*self.init_runs, *self.runs]:
            self.ctx.mount_points.release(f"{self.uid}/{run.name}")
        if self._gone or self._deleting():
            self.volumes.cleanup()
            with contextlib.suppress(OSError):
                shutil.rmtree(self.pod_dir / "work", ignore_errors=True)
