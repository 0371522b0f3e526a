"""`python -m e2e.cluster up [--kwok-nodes N] [--port-base P] | down | status`: the local cluster for people."""

from __future__ import annotations

import argparse
import sys

from e2e.cluster.harness import DEFAULT_KWOK_NODES, LocalCluster
from e2e.cluster.procs import ClusterError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster (a no-op when it is already up)")
    up.add_argument("--kwok-nodes", type=int, default=DEFAULT_KWOK_NODES, help="KWOK GPU nodes to create")
    up.add_argument("--port-base", type=int, default=None, help="first of 6 consecutive ports (default 6443)")
    up.add_argument("--no-process-nodes", action="store_true", help="do not start the process-backed nodes")
    up.add_argument("--no-real-node", action="store_true", help="do not start the real node (kubelet, containerd)")
    sub.add_parser("down", help="stop every process of the cluster and remove its etcd data")
    sub.add_parser("status", help="components, nodes Ready, kubeconfig path")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cluster = LocalCluster(
                port_base=args.port_base,
                kwok_nodes=args.kwok_nodes,
                process_nodes=not args.no_process_nodes,
                real_node=not args.no_real_node,
            )
            cluster.up()
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "down":
            LocalCluster().down()
        else:
            print(LocalCluster().status())
    except ClusterError as exc:
        print(f"cluster: ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cluster: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
