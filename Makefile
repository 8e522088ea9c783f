# borderwatch — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

# The lock files (pip-compile, every pin with its hashes): dev.txt = runtime + dev tools,
# runtime.txt = what deploy/Dockerfile installs, build.txt = what builds the project
# there (setuptools, wheel), the same versions as dev.txt. `make lock` refreshes them.
LOCK := requirements/dev.txt
RUNTIME_LOCK := requirements/runtime.txt
BUILD_LOCK := requirements/build.txt
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# Exactly the locked pins, hashes checked; then the project itself, editable, with no
	@# resolution of its own and built by the locked setuptools (no unpinned build env).
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv from the lock file, install borderwatch, its test tools and the Kafka jars
	$(BIN)/borderwatch broker install
	@# Test-only npm packages, pinned, installed together (a second --no-save install would
	@# prune the first): the official AsyncAPI JSON Schemas for the contract test and
	@# axe-core, which the browser tests inject into the dashboard.
	@grep -qs '"version": "6.11.1"' .tools/node_modules/@asyncapi/specs/package.json && \
	grep -qs '"version": "4.14.1"' .tools/node_modules/axe-core/package.json || \
		npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error \
			@asyncapi/specs@6.11.1 axe-core@4.14.1

vendor: ## re-vendor the dashboard's npm packages (pinned in services/api/static/vendor/package.json)
	$(PYTHON) scripts/vendor.py

screenshot: install ## refresh docs/dashboard.png: `borderwatch up --demo` on free ports, shot in Chromium
	$(BIN)/python scripts/screenshot.py docs/dashboard.png

system-deps: ## Debian packages the tests need (chromium, promtool, alertmanager)
	./scripts/system-deps.sh

run: install ## start the whole system on the embedded broker, with demo data
	$(BIN)/borderwatch up --demo

helm: ## helm for the chart tests, built from the Go module proxy (once; skipped when present)
	./scripts/install-helm.sh

test: install helm system-deps audit ## make audit, then the whole test suite (unit, integration on real Kafka, e2e, smoke)
	$(BIN)/pytest

unit: install ## unit tests only (no network)
	$(BIN)/pytest tests/unit

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check schemas services tests bench
	$(BIN)/ruff format --check schemas services tests bench

typecheck: $(STAMP) ## mypy --strict on schemas/ and services/
	$(BIN)/mypy

schemas: $(STAMP) ## re-export the JSON Schema files from the models
	$(BIN)/borderwatch schemas export

audit: $(STAMP) ## pip-audit the lock file's pins, npm audit vendored front-end packages (says so if no service is reachable)
	$(BIN)/python scripts/audit.py $(AUDIT_FLAGS)

lock: $(STAMP) ## refresh requirements/*.txt from pyproject.toml (LOCK_UPGRADE=--upgrade for newest)
	$(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_UPGRADE) --extra dev -o $(LOCK) pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) -c $(LOCK) -o $(RUNTIME_LOCK) pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) -c $(LOCK) --only-build-deps --build-deps-for wheel \
		-o $(BUILD_LOCK) pyproject.toml

dashboards: $(STAMP) ## regenerate the Grafana dashboards (deploy/grafana/dashboards/*.json)
	$(BIN)/borderwatch grafana export

bench: install ## run the benchmarks (print figures)
	$(BIN)/python -m bench.aggregator
	$(BIN)/python -m bench.window_steady
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.feeds
	$(BIN)/python -m bench.reports
	$(BIN)/python -m bench.metrics

.PHONY: help install helm vendor screenshot system-deps run test unit lint typecheck schemas audit lock dashboards bench
