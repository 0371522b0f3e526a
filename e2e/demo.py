"""The one-command demo: a local cluster, the operator and the gateway from the Helm chart, and a real SmolLM2 chat.

`python -m e2e.demo` (what `make demo` runs after `python -m e2e.setup all`):
1. starts a local cluster in `.demo/cluster` (real control plane, a few KWOK GPU nodes, a real node: kubelet +
   containerd running the project's images);
2. installs the chart `charts/dialogue-operator` with the gateway enabled; the operator and the gateway run as
   containers on the real node, with the chart's ServiceAccounts and RBAC;
3. binds a `model-cache` PersistentVolumeClaim to the converted SmolLM2 folder and applies
   `examples/smollm2-chat.yaml`; prints the DialogueModel's conditions as the engine loads;
4. prints an OpenAI-compatible URL (for `curl` from a second terminal) and opens a streaming chat.
Ctrl-C, `/quit`, or `make demo-down` (`python -m e2e.demo down`) stops everything it started.
`--no-chat` asks one question instead of opening the chat; `--keep` leaves everything running.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from e2e import chat, engine_env
from e2e.cluster.build import binaries
from e2e.cluster.harness import LocalCluster
from e2e.cluster.procs import ClusterError
from e2e.cluster.realnode import ON_REAL_NODE

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / ".demo"
NAMESPACE = "demo"
SYSTEM_NAMESPACE = "dialogue-system"
RELEASE = "dialogue-operator"
MODEL = "smollm2"
GATEWAY_PORT = 8080
LOAD_TIMEOUT_S = 900.0


# Degraded for these will not heal by waiting (transient states turn Degraded only past the grace period).
TERMINAL_REASONS = {"EngineFailed", "ImagePullFailed", "InvalidSpec", "ContainerConfigError", "OOMKilled"}
RESTRICTED_LABEL = "pod-security.kubernetes.io/enforce"
CHART_VALUES = {**ON_REAL_NODE, "gateway": {"enabled": True, **ON_REAL_NODE}}


class DemoError(RuntimeError):
    """A demo step failed; the message says which and what to look at."""


def say(line: str) -> None:
    print(f"demo: {line}", flush=True)


def demo_cluster() -> LocalCluster:
    # Its own ports, so the demo and a test cluster can run side by side.
    port_base = int(os.environ.get("DIALOGUE_DEMO_PORT_BASE", "7443"))
    return LocalCluster(DEMO_DIR / "cluster", kwok_nodes=4, port_base=port_base)


def model_volume_manifests(model_dir: Path) -> str:
    """A hostPath PersistentVolume holding the converted model folder, and the claim the DialogueModel names."""
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "demo-model-cache"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(model_dir.parent), "type": "Directory"},
            "claimRef": {"namespace": NAMESPACE, "name": "model-cache"},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "model-cache", "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": "demo-model-cache",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [pv, pvc]})


def install_chart(cluster: LocalCluster) -> None:
    helm = str(binaries().helm)
    args = [
        helm,
        "upgrade",
        "--install",
        RELEASE,
        str(ROOT / "charts" / "dialogue-operator"),
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--namespace",
        SYSTEM_NAMESPACE,
        "--create-namespace",
        "--values",
        "-",
        "--wait",
        "--timeout",
        "5m",
    ]
    done = subprocess.run(
        args, input=json.dumps(CHART_VALUES), capture_output=True, text=True, check=False, timeout=400
    )
    if done.returncode != 0:
        raise DemoError(f"helm install failed: {(done.stderr or done.stdout).strip()[-800:]}")


def get_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    out = cluster.kubectl("get", *args, "-o", "json").stdout
    loaded: dict[str, Any] = json.loads(out)
    return loaded


def wait_ready(cluster: LocalCluster, timeout_s: float = LOAD_TIMEOUT_S) -> None:
    """Prints each change of the DialogueModel's conditions until Ready=True (or a failure that will not heal)."""
    started = time.monotonic()
    seen: dict[str, tuple[str, str, str]] = {}
    while time.monotonic() - started < timeout_s:
        dm = get_json(cluster, "dialoguemodel", MODEL, "-n", NAMESPACE)
        for cond in dm.get("status", {}).get("conditions", []):
            key = (cond.get("status", ""), cond.get("reason", ""), cond.get("message", ""))
            if seen.get(cond["type"]) != key:
                seen[cond["type"]] = key
                say(f"[{time.monotonic() - started:5.0f} s] {cond['type']}={key[0]} {key[1]}: {key[2]}")
        ready = seen.get("Ready")
        if ready and ready[0] == "True":
            return
        degraded = seen.get("Degraded")
        if degraded and degraded[0] == "True" and degraded[1] in TERMINAL_REASONS:
            raise DemoError(f"the model failed to load: {degraded[1]}: {degraded[2]}")
        time.sleep(2)
    raise DemoError(
        f"the model was not Ready after {timeout_s:.0f} s; see `kubectl describe dm/{MODEL} -n {NAMESPACE}`"
    )


def gateway_url(cluster: LocalCluster) -> str:
    pods = get_json(
        cluster,
        "pods",
        "-n",
        SYSTEM_NAMESPACE,
        "-l",
        "app.kubernetes.io/component=gateway",
        "--field-selector",
        "status.phase=Running",
    )
    for pod in pods.get("items", []):
        ip = pod.get("status", {}).get("podIP")
        if ip:
            return f"http://{ip}:{GATEWAY_PORT}/v1"
    raise DemoError("no running gateway pod; see `kubectl get pods -n dialogue-system`")


def ask_once(base_url: str, question: str) -> str:
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 32, "temperature": 0}
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/chat/completions", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer: str = json.load(response)["choices"][0]["message"]["content"]
    return answer


def up(cluster: LocalCluster) -> str:
    started = time.monotonic()
    cluster.up()
    model_dir = engine_env.smollm2_dir()
    if not model_dir.is_dir():
        raise DemoError(f"the SmolLM2 folder {model_dir} is missing; run `python -m e2e.setup engine`")
    for namespace in (NAMESPACE, SYSTEM_NAMESPACE):  # both enforce the `restricted` Pod Security level
        cluster.kubectl("create", "namespace", namespace, check=False)
        cluster.kubectl("label", "namespace", namespace, f"{RESTRICTED_LABEL}=restricted", "--overwrite")
    cluster.kubectl("apply", "-f", "-", input=model_volume_manifests(model_dir))
    say("installing the chart (operator + gateway) ...")
    install_chart(cluster)
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "smollm2-chat.yaml"))
    say("applied examples/smollm2-chat.yaml; vLLM loads the model (about 2 minutes on 2 cores) ...")
    wait_ready(cluster)
    url = gateway_url(cluster)
    say(f"ready after {time.monotonic() - started:.0f} s")
    print(
        "\nOpenAI-compatible endpoint: "
        f"{url}\nFrom a second terminal:\n  curl -s {url}/chat/completions -H 'Content-Type: application/json' "
        f'-d \'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "Hello!"}}]}}\'\n'
        f"kubectl: export KUBECONFIG={cluster.kubeconfig}; kubectl get dm -A\n",
        flush=True,
    )
    return url


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", default="run", choices=["run", "down"])
    parser.add_argument("--no-chat", action="store_true", help="ask one question instead of opening the chat")
    parser.add_argument("--question", default="What is the capital of France?")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running when the demo ends")
    args = parser.parse_args(argv)
    cluster = demo_cluster()
    if args.action == "down":
        cluster.down()
        say("stopped")
        return 0

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    code = 0
    try:
        url = up(cluster)
        if args.no_chat or not sys.stdin.isatty():
            say(f"asking: {args.question}")
            say(f"answer: {ask_once(url, args.question)}")
        else:
            chat.repl(url, MODEL, os.environ.get("DIALOGUE_API_KEY"))
    except KeyboardInterrupt:
        say("interrupted")
    except (DemoError, ClusterError, urllib.error.URLError, OSError) as exc:
        say(f"FAILED: {exc}")
        code = 1
    finally:
        if args.keep:
            say(f"left running; stop it with `make demo-down` (kubeconfig {cluster.kubeconfig})")
        else:
            say("stopping everything the demo started ...")
            cluster.down(quiet=True)
            say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
