# seldon-river: `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
MANIFEST ?= manifests/full-graph.yaml
.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n",$$1,$$2}'

install: ## Install system packages and both Python environments (.venv: stock wrapper, river 0.23; .venv-current: river 0.26)
	bash scripts/setup-system.sh
	bash scripts/setup-python.sh

test: ## Install everything and run the whole test suite (containers and API server included)
	bash scripts/test.sh

demo: ## Run the full graph locally (no cluster) and stream a dataset through it; writes a PNG
	bash scripts/setup-python.sh main
	$(PY) -m model_wrappers.cli demo --out demo-out

lint: ## Byte-compile the package and check the installed dependency set
	$(PY) -m compileall -q model_wrappers tests benchmarks
	$(VENV)/bin/pip check

images: ## Build the component image (and the local base image when BASE_IMAGE=local)
	bash scripts/docker.sh build

s2i: ## Build the model image with s2i and the local builder image
	bash scripts/docker.sh s2i

chart: ## helm lint --strict and helm template of charts/seldon-river
	bash scripts/chart.sh

crd: ## Download Seldon's v1.17.1 SeldonDeployment CRD (networked machines only)
	bash scripts/fetch-crd.sh

deploy: ## kubectl apply a manifest to the current cluster (MANIFEST=...)
	$(PY) -m model_wrappers.cli deploy $(MANIFEST)

undeploy: ## Delete a manifest's objects from the current cluster (MANIFEST=...)
	$(PY) -m model_wrappers.cli undeploy $(MANIFEST)

bench: ## Run the benchmarks; prints a table and writes benchmarks/results.json
	bash scripts/setup-python.sh main
	$(PY) -m benchmarks.run

reliability: ## Kill -9 drills and the fuzz suite; prints the figures and writes benchmarks/reliability.json
	bash scripts/setup-python.sh
	$(PY) -m benchmarks.reliability

bench-kafka: ## Durable feedback through Kafka beside SQLite and Redis; writes benchmarks/kafka.json
	bash scripts/setup-python.sh main
	bash scripts/kafka.sh ensure
	$(PY) -m benchmarks.kafka_log

bench-live: ## Predictions with and without the live view's streams open; writes benchmarks/live_view.json
	bash scripts/setup-python.sh main
	$(PY) -m benchmarks.live_view

bench-sharded: ## Keyed models over 1, 2 and 4 shards (RSS per shard, requests/s); the keyed_sharded key of benchmarks/results.json
	bash scripts/setup-python.sh main
	$(PY) -m benchmarks.keyed --sharded --out benchmarks/results.json

.PHONY: help install test demo lint images s2i chart crd deploy undeploy bench reliability bench-kafka bench-live bench-sharded
