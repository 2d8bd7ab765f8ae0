# match-list-change-detector — developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RESULTS := .cache/test-results
# MatchWatchers for `make bench` (about 6 minutes at 300 on 2 cores, 9 at 1000; issue 14's
# figure, 10000, about an hour): `make bench BENCH_WATCHERS=10000`.
BENCH_WATCHERS ?= 300
# Quiet-hours digests due at one moment (about 1.5 minutes at 2000; issue 22's 10000 about 6).
BENCH_DIGESTS ?= 2000
# Operator processes (each with MLCD_SHARDS/MLCD_SHARD_INDEX), and 0 to skip the peer operator
# (the simplest kopf daemon-per-watcher operator, run afterwards on the same watchers).
BENCH_SHARDS ?= 1
BENCH_PEER ?= 1
# Watchers whose calendar feed a client each polls every 5 minutes (tests/bench/calendar.py;
# about a minute at 300, time compressed 60 times).
BENCH_CALENDAR_WATCHERS ?= 300
# `make soak`: how long, how many MatchWatchers, and the seed that replays a run (empty: random).
SOAK_MINUTES ?= 10
SOAK_WATCHERS ?= 100
SOAK_SEED ?=
# Comma-separated fault kinds (empty: all; `python -m tests.soak --help` lists them).
SOAK_FAULTS ?=

.DEFAULT_GOAL := help
.PHONY: help setup lint reference format unit integration soak-short test bench soak demo demo-down \
	cluster-up cluster-down tools render chart-check clean image node-up node-down test-e2e \
	ci-cold

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(STAMP) ## create .venv and install the project with its dev tools (idempotent)

lint: setup ## ruff (lint + format check), mypy --strict, layer contracts, Markdown links, docs/reference.md up to date
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m hack.check_links
	$(BIN)/python -m hack.reference --check

reference: setup ## regenerate docs/reference.md from the CRD, Reason, the metrics and Settings
	$(BIN)/python -m hack.reference

format: setup ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: setup ## unit tests (pure cores, adapters against local fakes)
	$(BIN)/pytest tests/unit -q --junitxml=$(RESULTS)/unit.xml

integration: setup ## integration tests against a real local etcd + kube-apiserver
	$(BIN)/pytest tests/integration -q --junitxml=$(RESULTS)/integration.xml

soak-short: setup ## the short fixed-seed chaos soak (about 4 minutes) and its invariant checker's tests
	$(BIN)/pytest tests/soak -q --junitxml=$(RESULTS)/soak.xml

test: lint unit integration soak-short chart-check ## everything: lint, types, unit/integration/soak tests, chart checks
	$(BIN)/python hack/check_results.py $(RESULTS)/unit.xml $(RESULTS)/integration.xml \
		$(RESULTS)/soak.xml

bench: setup ## print performance figures (diff speed, digests, operator at scale); no pass/fail thresholds
	$(BIN)/python -m tests.bench.bench_diff
	$(BIN)/python -m tests.bench.churn
	$(BIN)/python -m tests.bench.maintenance
	$(BIN)/python -m tests.bench.digests --watchers $(BENCH_DIGESTS)
	$(BIN)/python -m tests.bench.calendar --watchers $(BENCH_CALENDAR_WATCHERS)
	$(BIN)/python -m tests.bench.operator --watchers $(BENCH_WATCHERS) --shards $(BENCH_SHARDS) \
		$(if $(filter 0,$(BENCH_PEER)),--no-peer,--peer)

soak: setup ## chaos soak: SOAK_WATCHERS watchers, faults for SOAK_MINUTES; SOAK_SEED replays one
	$(BIN)/python -m tests.soak --minutes $(SOAK_MINUTES) --watchers $(SOAK_WATCHERS) \
		$(if $(SOAK_SEED),--seed $(SOAK_SEED)) $(if $(SOAK_FAULTS),--faults $(SOAK_FAULTS))

demo: setup ## the whole job on an embedded default: cluster, FOGIS stand-in, operator, webhook (KEEP=1 keeps it)
	$(BIN)/python -m hack.demo

demo-down: ## stop what `make demo KEEP=1` left running, and the local control plane
	$(BIN)/python -m hack.demo down

image: ## build the operator image (buildah, Debian base) plus pause/stand-in images; last line = the image reference
	hack/images all

node-up: setup ## (root) a real local node: control plane + kubelet, containerd, kube-proxy, CoreDNS
	hack/local-node up

node-down: ## (root) stop the local node and the control plane; leaves nothing behind
	hack/local-node down

test-e2e: setup ## (root) the chart's pod on a real local node: install, probes, GC, upgrade, HA, uninstall
	@[ "$$(id -u)" = 0 ] || { echo "make test-e2e: needs root (containerd, kubelet, iptables); run it as root" >&2; exit 1; }
	$(BIN)/pytest tests/e2e -q --junitxml=$(RESULTS)/e2e.xml
	$(BIN)/python hack/check_results.py $(RESULTS)/e2e.xml

# CACHES=1 also removes the per-user caches (a cold build: about 21 minutes more).
CACHES ?=
ci-cold: ## (root) CI as on a bare machine: remove what the scripts install, then .ci/run in a fresh clone
	hack/ci-cold $(if $(CACHES),--caches)

tools: ## build helm and kubeconform once into the per-user cache
	hack/tools

render: ## render the Helm chart into the raw manifests in deploy/
	hack/render-manifests

chart-check: setup ## helm lint --strict, helm template | kubeconform -strict (offline), hadolint, deploy/ up to date
	hack/chart-check

cluster-up: setup ## start the local control plane (builds it the first time)
	hack/local-cluster up

cluster-down: ## stop the local control plane and remove its data
	hack/local-cluster down

clean: cluster-down ## remove caches in the checkout (not the per-user binary cache)
	rm -rf .cache .mypy_cache .ruff_cache .pytest_cache
