"""Command line of the process-backed node: `python -m e2e.cluster.podrunner --kubeconfig PATH --node-name NAME
--pod-cidr CIDR --state-dir DIR --gpus N [--gpu-product PRODUCT]`. SIGTERM/SIGINT stop every pod's processes
(SIGTERM, grace, SIGKILL) and exit."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType

from e2e.cluster.podrunner.kubeapi import ApiError
from e2e.cluster.podrunner.runner import Runner, RunnerAlreadyRunning, RunnerConfig


def parse_args(argv: list[str]) -> RunnerConfig:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster.podrunner", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--pod-cidr", required=True, help="IPv4 CIDR inside 127.0.0.0/8, e.g. 127.32.1.0/24")
    parser.add_argument("--state-dir", type=Path, required=True, help="logs, volumes, PVC data of this node")
    parser.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu capacity; >0 adds the GPU label/taint")
    parser.add_argument("--gpu-product", default="NVIDIA-L4", help="nvidia.com/gpu.product label when --gpus > 0")
    parser.add_argument("--cpu", help="cpu capacity reported (default: 96 with GPUs, like the KWOK GPU nodes; else 32)")
    parser.add_argument("--memory", help="memory capacity reported (default: 1Ti with GPUs; else 256Gi)")
    parser.add_argument("--max-pods", type=int, default=110)
    parser.add_argument("--backoff-cap-s", type=float, default=300.0, help="CrashLoopBackOff cap (kubelet: 300)")
    parser.add_argument("--shutdown-grace-s", type=float, default=10.0, help="longest grace per pod at shutdown")
    parser.add_argument(
        "--unschedulable", action="store_true", help="cordon the node: only pods naming it in spec.nodeName land"
    )
    parser.add_argument("--no-log-server", action="store_true", help="do not serve /containerLogs over HTTPS")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s podrunner[" + args.node_name + "] %(message)s",
    )
    return RunnerConfig(
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        pod_cidr=args.pod_cidr,
        state_dir=args.state_dir.resolve(),
        gpus=args.gpus,
        gpu_product=args.gpu_product,
        cpu=args.cpu or ("96" if args.gpus > 0 else "32"),
        memory=args.memory or ("1Ti" if args.gpus > 0 else "256Gi"),
        max_pods=args.max_pods,
        unschedulable=args.unschedulable,
        backoff_cap_s=args.backoff_cap_s,
        shutdown_grace_s=args.shutdown_grace_s,
        serve_logs=not args.no_log_server,
    )


REQUIRED_TOOLS = ("unshare", "nsenter", "setpriv", "mount")


def preflight() -> str | None:
    """Why this machine cannot run pods, or None."""
    if os.geteuid() != 0:
        return "it must run as root: each container gets its volumes bind-mounted in a private mount namespace"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (util-linux): install it with `apt-get install util-linux mount`"
    return None


def main(argv: list[str]) -> int:
    config = parse_args(argv)
    problem = preflight()
    if problem:
        print(f"podrunner: cannot start node {config.node_name}: {problem}", file=sys.stderr)
        return 2
    try:
        runner = Runner(config)
    except (ValueError, OSError) as exc:
        print(f"podrunner: cannot start node {config.node_name}: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("podrunner").info("received %s", signal.Signals(signum).name)
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runner.run()
    except RunnerAlreadyRunning as exc:
        print(f"podrunner: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(
            f"podrunner: node {config.node_name}: {exc} (is the API server up? is the kubeconfig right?)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
