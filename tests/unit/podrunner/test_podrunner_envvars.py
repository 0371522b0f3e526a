"""Container env and command line: kubelet `$(VAR)` expansion, valueFrom sources, envFrom, argv rules."""

import base64

import pytest

from e2e.cluster.podrunner.envvars import (
    ContainerConfigError,
    ObjectSource,
    container_argv,
    container_env,
    expand,
    parse_quantity,
    service_env,
)

POD = {
    "metadata": {"name": "web-0", "namespace": "chat", "uid": "u-1", "labels": {"app": "web", "tier": "a"}},
    "spec": {"nodeName": "proc-cpu-0"},
    "status": {"podIP": "127.32.1.7", "podIPs": [{"ip": "127.32.1.7"}], "hostIP": "127.0.0.1"},
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SOURCE = ObjectSource(
    secret=lambda ns, name: {"password": b64("hunter2"), "user": b64("ann")} if (ns, name) == ("chat", "db") else None,
    configmap=lambda ns, name: {"greeting": "hi", "bad key": "x"} if (ns, name) == ("chat", "cfg") else None,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--host=$(POD_IP)", "--host=127.32.1.7"),
        ("$(POD_IP):$(PORT)", "127.32.1.7:8000"),
        ("$$(POD_IP)", "$(POD_IP)"),  # escaped
        ("$(UNDEFINED)", "$(UNDEFINED)"),  # unknown names stay as written
        ("$HOME and $", "$HOME and $"),  # shell syntax is not the kubelet's business
        ("$(POD_IP", "$(POD_IP"),  # unclosed
        ("a$$b", "a$b"),
    ],
)
def test_expand_follows_kubelet_rules(text: str, expected: str) -> None:
    assert expand(text, {"POD_IP": "127.32.1.7", "PORT": "8000"}) == expected


def test_env_sources_in_kubelet_order() -> None:
    container = {
        "name": "main",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "db"}}],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "value": "http://$(POD_IP):8000/$(user)"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
            {"name": "API", "value": "$(KUBERNETES_SERVICE_HOST)"},
        ],
    }
    env = container_env(POD, container, SOURCE, service_env("127.0.0.1", 6443))
    assert env["POD_IP"] == "127.32.1.7"
    assert env["URL"] == "http://127.32.1.7:8000/ann"
    assert env["NAME"] == "web-0"
    assert env["APP"] == "web"
    assert env["PW"] == "hunter2"
    assert env["GREETING"] == env["CFG_greeting"] == "hi"
    assert "CFG_bad key" not in env  # invalid names are skipped, as the kubelet does
    assert "OPT" not in env
    assert env["API"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"


def test_env_value_cannot_see_later_variables() -> None:
    container = {"env": [{"name": "A", "value": "$(B)"}, {"name": "B", "value": "b"}]}
    assert container_env(POD, container, SOURCE, {})["A"] == "$(B)"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"secretKeyRef": {"name": "absent", "key": "k"}}, 'secret "absent" not found'),
        ({"secretKeyRef": {"name": "db", "key": "nokey"}}, "couldn't find key nokey in Secret chat/db"),
        ({"configMapKeyRef": {"name": "nocm", "key": "k"}}, 'configmap "nocm" not found'),
    ],
)
def test_missing_reference_is_a_config_error(ref: dict[str, object], message: str) -> None:
    container = {"env": [{"name": "X", "valueFrom": ref}]}
    with pytest.raises(ContainerConfigError, match=message):
        container_env(POD, container, SOURCE, {})


def test_missing_env_from_source_is_a_config_error_unless_optional() -> None:
    with pytest.raises(ContainerConfigError, match='secret "nope" not found'):
        container_env(POD, {"envFrom": [{"secretRef": {"name": "nope"}}]}, SOURCE, {})
    assert container_env(POD, {"envFrom": [{"secretRef": {"name": "nope", "optional": True}}]}, SOURCE, {}) == {}


def test_resource_field_ref_rounds_up_with_divisor_and_falls_back_to_node() -> None:
    container = {
        "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "250m"}},
        "env": [
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
            {"name": "CPU_REQ_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
            {"name": "CPU_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        ],
    }
    env = container_env(POD, container, SOURCE, {}, {"cpu": "32"})
    assert env == {"MEM_MI": "1024", "CPU_REQ": "1", "CPU_REQ_M": "250", "CPU_LIM": "32"}


@pytest.mark.parametrize(("text", "value"), [("500m", 0.5), ("2Gi", 2**31), ("1e3", 1000), ("3", 3), ("1.5k", 1500)])
def test_parse_quantity(text: str, value: float) -> None:
    assert float(parse_quantity(text)) == value


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a resource quantity"):
        parse_quantity("lots")


def test_argv_rules() -> None:
    env = {"PORT": "9000"}
    entry, cmd = ("python3", "-m", "engine"), ("--default",)
    assert container_argv({}, env, entry, cmd) == ["python3", "-m", "engine", "--default"]
    assert container_argv({"args": ["--port=$(PORT)"]}, env, entry, cmd) == ["python3", "-m", "engine", "--port=9000"]
    assert container_argv({"args": []}, env, entry, cmd) == ["python3", "-m", "engine"]
    assert container_argv({"command": ["sh", "-c"], "args": ["echo $(PORT)"]}, env, entry, cmd) == [
        "sh",
        "-c",
        "echo 9000",
    ]
    assert container_argv({"command": ["run"]}, env, entry, cmd) == ["run"]  # command drops the image's CMD
