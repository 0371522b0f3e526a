"""A small kubelet for the local e2e cluster: runs the pods bound to its node as local processes (e2e layer).

Start it with `python -m e2e.cluster.podrunner --kubeconfig PATH --node-name NAME --pod-cidr CIDR
--state-dir DIR --gpus N [--gpu-product PRODUCT]`. Images map to local environments through
`e2e/cluster/images.py`; see `runner.py` for the lifecycle and `podworker.py` for one pod's.
"""

from e2e.cluster.podrunner.runner import Runner, RunnerConfig

__all__ = ["Runner", "RunnerConfig"]
