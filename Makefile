# Developer loop for Glimpse. `make` (or `make help`) lists the targets.
# Everything runs from the project's own files: `make install` brings uv and the locked
# dependencies; the tests start the PostgreSQL test server they need themselves.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV      := .venv
BIN       := $(VENV)/bin
PYTEST    := $(BIN)/pytest
RUFF      := $(BIN)/ruff
MYPY      := $(BIN)/mypy
GLIMPSE   := $(BIN)/glimpse-server

HOST      ?= 127.0.0.1
PORT      ?= 9292
CONFIG    ?=
WORKERS   ?=
PYTEST_ARGS ?=

SERVE_ARGS := --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG)) $(if $(WORKERS),--workers $(WORKERS))

.PHONY: help install fmt lint typecheck test test-fast run worker bench soak db-upgrade db-check \
	services-stop clean distclean

help: ## Show this help
	@echo "usage: make <target> [VAR=value ...]"
	@echo
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  %-14s %s\n", $$1, $$2}'
	@echo
	@echo "variables: HOST=$(HOST) PORT=$(PORT) WORKERS=<n> (run); CONFIG=<file> (run, worker); PYTEST_ARGS=... (test, test-fast)"
	@echo "           GLIMPSE_TEST_PG_PORT (test server port, default 24329)"
	@echo "           GLIMPSE_TEST_MARIADB_PORT (MariaDB test server port, default GLIMPSE_TEST_PG_PORT - 21000)"

install: ## Install uv (pinned, in .tools/) and the locked dependencies into .venv/
	@bash scripts/bootstrap.sh

fmt: install ## Format and auto-fix: ruff format + ruff check --fix
	$(RUFF) format .
	$(RUFF) check --fix .

lint: install ## Lint: ruff check + ruff format --check + the import layers (lint-imports)
	$(RUFF) check .
	$(RUFF) format --check .
	$(BIN)/lint-imports

typecheck: install ## Type-check with mypy (strict; config in pyproject.toml)
	$(MYPY)

# The PostgreSQL, MariaDB and object store test servers are started by the tests themselves
# (tests/conftest.py) and left running between pytest runs for speed; this target stops them
# afterwards, pass or fail, and exits with pytest's status (so "no tests collected", exit 5, fails too).
test: install lint typecheck ## Full check: lint, typecheck, then the whole suite (pytest -n 2) with real services
	@status=0; \
	$(PYTEST) -n 2 --dist loadgroup $(PYTEST_ARGS) || status=$$?; \
	bash scripts/postgres.sh stop || true; \
	bash scripts/mariadb.sh stop || true; \
	bash scripts/s3-server.sh stop || true; \
	bash scripts/rabbitmq.sh stop || true; \
	if [ "$$status" -ne 0 ]; then echo "make test: pytest exited with status $$status" >&2; fi; \
	exit $$status

test-fast: install ## Unit tests only, no services (tests/unit, skipping anything marked postgres/mariadb/live/objects)
	$(PYTEST) tests/unit -m "not postgres and not mariadb and not live and not objects" $(PYTEST_ARGS)

run: install ## Serve the API on HOST:PORT (127.0.0.1:9292) with embedded defaults (migrates the SQLite DB on start)
	$(GLIMPSE) serve $(SERVE_ARGS)

worker: install ## Run the task runners without the API (glimpse-server worker), on the same defaults as run
	$(GLIMPSE) worker $(if $(CONFIG),--config $(CONFIG))

bench: install ## Run the benchmarks (bench/bench.py)
	$(BIN)/python bench/bench.py

soak: install ## Mixed load for 10 minutes against a server of its own, a table row per minute (bench/soak.py)
	$(BIN)/python bench/soak.py --minutes 10

db-upgrade: install ## Apply database migrations (glimpse-server db upgrade)
	$(GLIMPSE) db upgrade

db-check: install ## Check the database schema is at the latest migration (glimpse-server db check)
	$(GLIMPSE) db check

services-stop: ## Stop the test services (PostgreSQL, MariaDB, the Swift/S3 server, RabbitMQ) if running
	@bash scripts/postgres.sh stop
	@bash scripts/mariadb.sh stop
	@bash scripts/s3-server.sh stop
	@bash scripts/rabbitmq.sh stop

clean: ## Stop and delete the test services' data, remove caches and build output (keeps .venv/.tools)
	@bash scripts/postgres.sh destroy
	@bash scripts/mariadb.sh destroy
	@bash scripts/rabbitmq.sh destroy
	@bash scripts/s3-server.sh destroy
	rm -rf .test-services .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build htmlcov .coverage
	find . -path ./.venv -prune -o -path ./.tools -prune -o -path ./.git -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf

distclean: clean ## clean, and also remove .venv/ and .tools/
	rm -rf $(VENV) .tools
