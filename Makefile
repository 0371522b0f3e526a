# One command per habit. What CI runs (.ci/run -> make test) is what you run.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all setup images test test-unit test-integration lint format bench demo demo-down cluster-up cluster-down cluster-status crds clean

all: lint test-unit

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install CPython 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

## setup: everything the tests and the demo need (project venv, cluster binaries, engine venv, model)
setup: $(STAMP)
	$(PY) -m e2e.setup all

## test: every test (unit, the local cluster, real vLLM); sets up what is missing first
test: $(STAMP)
	$(PY) -m e2e.setup all
	$(PY) -m pytest

## test-unit: fast tests of the pure code, no cluster or engine
test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP)
	$(PY) -m e2e.setup all
	$(PY) -m pytest tests/integration e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy operator/dialogue_operator runtime/dialogue_runtime
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## images: the project's OCI images with buildah (no Docker daemon); PUSH=1 REGISTRY=host/org pushes them
images: $(STAMP)
	$(PY) -m e2e.images $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(filter 1,$(PUSH)),--push)

## bench: measure and write BENCHMARKS.md
bench: $(STAMP)
	$(PY) -m e2e.setup all
	$(PY) -m e2e.bench

## demo: set up what is missing, start the cluster, operator and gateway, apply a chat model, chat with it
demo: $(STAMP)
	$(PY) -m e2e.setup all
	$(PY) -m e2e.demo

demo-down: $(STAMP)
	$(PY) -m e2e.demo down

cluster-up: $(STAMP)
	$(PY) -m e2e.setup cluster
	$(PY) -m e2e.cluster up

cluster-down: $(STAMP)
	$(PY) -m e2e.cluster down

cluster-status: $(STAMP)
	$(PY) -m e2e.cluster status

crds: $(STAMP)
	$(PY) -m dialogue_operator.api.crdgen --write crds/ --write charts/dialogue-operator/crds/

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
