# One front door. `make up` starts everything; `make test` runs every test. Both install what is
# missing (virtualenv, PostgreSQL, Kafka) and are safe to run again.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# The official AsyncAPI parser (Node), pinned by tools/asyncapi/package-lock.json; the contract tests run it.
NODE_STAMP := tools/asyncapi/node_modules/.installed-$(shell sha1sum tools/asyncapi/package-lock.json | cut -c1-12)

.PHONY: up down status test test-unit lint bench bench-core bench-store bench-rebuild bench-e2e faults failover-demo demo venv node-tools contracts clean

venv: $(VENV_STAMP)
$(VENV_STAMP): pyproject.toml
	@test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[dev,bench]'
	@rm -f .venv/.installed-* && touch $@

node-tools: $(NODE_STAMP)
$(NODE_STAMP): tools/asyncapi/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node 20+) is needed to validate the AsyncAPI documents" >&2; exit 1; }
	@npm ci --prefix tools/asyncapi --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
	@rm -f tools/asyncapi/node_modules/.installed-* && touch $@

infra: venv
	@deploy/local/infra.sh up
	@deploy/local/infra.sh fetch-kafka

up: infra
	@deploy/local/services.sh start

down:
	@deploy/local/services.sh stop || true
	@deploy/local/infra.sh down

status:
	@deploy/local/infra.sh status
	@deploy/local/services.sh status

test: infra node-tools
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy
	@$(PY) -m pytest

test-unit: venv node-tools
	@$(PY) -m pytest tests/unit

# The same checks as .pre-commit-config.yaml.
lint: venv
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy

bench: bench-core bench-store bench-rebuild bench-e2e

bench-core: infra
	@$(PY) -m bench.core

# The drain rate of a 100k backlog (and append, load+decide+append) over a big store. Building
# 10 million events takes ~5 min per database on a 2-core machine: STORE_EVENTS=1000000 for a
# quick look.
STORE_EVENTS ?= 10000000
bench-store: infra
	@$(PY) -m bench.core --store-events $(STORE_EVENTS) --relay-events 100000 --workloads append1,load1,relay --rounds 2

# Drives the running system (`make up`) through HTTP; starts nothing else.
bench-rebuild: infra
	@$(PY) -m bench.rebuild

bench-e2e: up
	@$(PY) -m bench.e2e

# The fault campaign runs on its own private PostgreSQL and Kafka (never the ones `make up` runs).
# FAULTS_ARGS passes options, e.g. `make faults FAULTS_ARGS="--reports 2000 --seed 7"`.
faults: infra
	@$(PY) -m bench.faults $(FAULTS_ARGS)

# Primary + streaming standby (private, loopback), the primary SIGKILLed under load and the standby
# promoted, once with synchronous and once with asynchronous replication (~1-2 min, bounded).
# Exits 1 if the synchronous run loses anything. FAILOVER_ARGS passes options.
failover-demo: infra
	@$(PY) -m bench.failover $(FAILOVER_ARGS)

demo: up
	@$(PY) deploy/local/demo.py

contracts: venv
	@$(PY) -m shared.contracts.docs

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache tools/asyncapi/node_modules
