# Chosen: `make run` serves the demo on http://localhost:8000; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
HOST ?= 127.0.0.1
PORT ?= 8000

# The suite runs against the real PostgreSQL and Redis on this machine; DATABASE_URL /
# REDIS_URL (or TEST_DATABASE_URL / TEST_REDIS_URL) point it elsewhere. pytest-django creates
# and drops its own test_<name> database, so a developer's data is never touched.
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@localhost:5432/chosen)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://localhost:6379/15)
# pytest-xdist's processes: each its own test database (pytest-django) and Redis database
# (tests/conftest.py). The tests mostly wait on browsers, servers and workers they started.
TEST_PROCESSES ?= 2

.PHONY: run reset test install install-test test-tools lint format clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --inexact keeps uv and pip themselves in the environment; --frozen installs exactly the lock.
install: $(BIN)/uv
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --inexact --quiet

install-test: $(BIN)/uv
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --inexact --quiet --extra test
	@$(MAKE) --no-print-directory test-tools

# System tools the suite drives for real: Debian's Chromium (browser tests through Playwright;
# never `playwright install`, nothing downloads at run time) and docker-compose (validates
# docker-compose.yml; there is no Docker engine here to run it).
TEST_TOOLS := $(if $(wildcard /usr/bin/chromium),,chromium) $(if $(shell command -v docker-compose),,docker-compose)
test-tools:
	@if [ -n "$(strip $(TEST_TOOLS))" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "Please install: sudo apt-get install -y $(TEST_TOOLS)" >&2; exit 1; fi; \
	  echo "Installing $(strip $(TEST_TOOLS)) from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_TOOLS) >/dev/null; \
	fi

# Without DATABASE_URL / REDIS_URL: private PostgreSQL and Redis under var/, then migrations,
# the demo, the web server, a Celery worker and beat (project/embedded.py). Ctrl+C stops all.
run: install
	@$(BIN)/python -m project.embedded --host $(HOST) --port $(PORT)

# Deletes the private servers' data (database, queue, uploads, exports) for a fresh demo.
reset:
	@$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m project.embedded --reset

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python manage.py makemigrations --check --dry-run

test: install-test lint
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest -n $(TEST_PROCESSES) --dist worksteal $(PYTEST_ARGS)

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
