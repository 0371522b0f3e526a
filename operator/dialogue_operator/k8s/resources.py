"""Where each kind the operator touches lives in the API (paths and plurals; pure data)."""

from __future__ import annotations

from dataclasses import dataclass

from dialogue_runtime import contract


@dataclass(frozen=True)
class Resource:
    """One API resource: group/version, plural, and the URL path for a namespace (or all namespaces)."""

    kind: str
    api_version: str
    plural: str

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The REST path; no namespace means across all namespaces."""
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [base]
        if namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)


DIALOGUE_MODEL = Resource(contract.KIND, f"{contract.API_GROUP}/{contract.API_VERSION}", contract.PLURAL)
DEPLOYMENT = Resource("Deployment", "apps/v1", "deployments")
SERVICE = Resource("Service", "v1", "services")
CONFIG_MAP = Resource("ConfigMap", "v1", "configmaps")
PDB = Resource("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets")
NETWORK_POLICY = Resource("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies")
POD = Resource("Pod", "v1", "pods")
EVENT = Resource("Event", "v1", "events")
SECRET = Resource("Secret", "v1", "secrets")
PVC = Resource("PersistentVolumeClaim", "v1", "persistentvolumeclaims")
NODE = Resource("Node", "v1", "nodes")

CHILD_RESOURCES: dict[str, Resource] = {r.kind: r for r in (DEPLOYMENT, SERVICE, CONFIG_MAP, PDB, NETWORK_POLICY)}
