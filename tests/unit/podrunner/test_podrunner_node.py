"""The process-backed node's shape: labels, capacity, taint and the status it reports."""

from e2e.cluster.podrunner.node import NodeShape, node_status


def shape(gpus: int) -> NodeShape:
    return NodeShape(name="proc-gpu-0", pod_cidr="127.32.0.0/24", gpus=gpus, gpu_product="NVIDIA-L4",
                     cpu="96", memory="1Ti", max_pods=110, kubelet_port=10250)  # fmt: skip


def test_gpu_node_is_shaped_like_the_kwok_gpu_nodes() -> None:
    gpu = shape(8)
    assert gpu.labels()["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert gpu.labels()["dialogue.dev/node-kind"] == "process"
    assert gpu.capacity()["nvidia.com/gpu"] == "8"
    assert gpu.taints() == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


def test_cpu_node_has_no_gpu_label_capacity_or_taint() -> None:
    cpu = shape(0)
    assert "nvidia.com/gpu.product" not in cpu.labels()
    assert "nvidia.com/gpu" not in cpu.capacity()
    assert cpu.taints() == []


def test_status_is_ready_with_addresses_and_kubelet_port() -> None:
    status = node_status(shape(8))
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert {"type": "Hostname", "address": "proc-gpu-0"} in status["addresses"]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert status["allocatable"] == status["capacity"]


def test_heartbeat_keeps_the_transition_time() -> None:
    first = node_status(shape(0))
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    previous = [{**c, "lastTransitionTime": "2020-01-01T00:00:00Z"} for c in first["conditions"]]
    again = next(c for c in node_status(shape(0), previous)["conditions"] if c["type"] == "Ready")
    assert again["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert again["lastHeartbeatTime"] >= ready["lastHeartbeatTime"]
