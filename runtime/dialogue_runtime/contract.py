"""The contract between the operator and the data plane: label keys, ports, paths, images (pure constants).

The operator imports this module (the runtime never imports the operator), so both sides agree on how runtime
pods are labelled, where the rendered engine configuration is mounted and which port serves the OpenAI API.
"""

from __future__ import annotations

from typing import Final

API_GROUP: Final = "dialogue.dev"
API_VERSION: Final = "v1alpha1"
KIND: Final = "DialogueModel"
PLURAL: Final = "dialoguemodels"

FIELD_MANAGER: Final = "dialogue-operator"

# Labels on every runtime pod (and the Deployment that owns it). The gateway selects pods with these.
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MODEL: Final = "dialogue.dev/model"
LABEL_VARIANT: Final = "dialogue.dev/variant"
MANAGED_BY: Final = "dialogue-operator"
PART_OF: Final = "dialogue-operator"
COMPONENT_RUNTIME: Final = "runtime"
COMPONENT_GATEWAY: Final = "gateway"

ANNOTATION_SPEC_HASH: Final = "dialogue.dev/spec-hash"

# The runtime container.
ENGINE_PORT: Final = 8000
ENGINE_PORT_NAME: Final = "http"
ENGINE_CONFIG_DIR: Final = "/etc/dialogue"
ENGINE_CONFIG_FILE: Final = "engine.json"
ENGINE_CONFIG_ENV: Final = "DIALOGUE_ENGINE_CONFIG"
ENGINE_API_KEY_ENV: Final = "DIALOGUE_ENGINE_API_KEY"
MODEL_CACHE_MOUNT: Final = "/models"
TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
POD_IP_ENV: Final = "POD_IP"

# Container images (repository names). The local pod runner maps each to a local environment
# (e2e/cluster/images.py); the Dockerfiles under images/ build them for real clusters.
IMAGE_REGISTRY: Final = "ghcr.io/dialogue-operator"
IMAGE_RUNTIME: Final = f"{IMAGE_REGISTRY}/runtime"
IMAGE_GATEWAY: Final = f"{IMAGE_REGISTRY}/gateway"
IMAGE_OPERATOR: Final = f"{IMAGE_REGISTRY}/operator"
IMAGE_COMPRESS: Final = f"{IMAGE_REGISTRY}/compress"
IMAGE_TAG: Final = "0.1.0"

# GPU scheduling.
GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
GPU_TAINT_KEY: Final = "nvidia.com/gpu"
