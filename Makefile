# borderwatch — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv, install borderwatch, its dev tools and the Kafka jars
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

test: install system-deps ## run the whole test suite (unit, integration on real Kafka, e2e, smoke)
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

audit: $(STAMP) ## pip-audit the installed pins, npm audit vendored front-end packages (says so if no service is reachable)
	$(BIN)/python scripts/audit.py $(AUDIT_FLAGS)

dashboards: $(STAMP) ## regenerate the Grafana dashboards (deploy/grafana/dashboards/*.json)
	$(BIN)/borderwatch grafana export

bench: install ## run the benchmarks (print figures)
	$(BIN)/python -m bench.aggregator
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.feeds
	$(BIN)/python -m bench.reports
	$(BIN)/python -m bench.metrics

.PHONY: help install vendor screenshot system-deps run test unit lint typecheck schemas audit dashboards bench
