# Django Automate: `make demo` and `make test` work from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,postgres,redis,openai,anthropic,pinecone,cohere,local,mcp,otel,prometheus
# The `local` extra (sentence-transformers) needs torch. Installed first and pinned, so pip
# does not pick a multi-GB CUDA build; see README ("CPU-only torch") for other machines.
TORCH ?= torch==2.13.0
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# The demo runs on the base package alone (SQLite, in-process worker): no extras, no torch.
DEMO_STAMP := $(VENV)/.installed-base
PYTEST_ARGS ?=

.PHONY: help install browser demo test test-sqlite test-postgres lint typecheck format bench soak clean

help:
	@echo "make demo    set up and run the demo (embedded: SQLite, in-process worker; base package only)"
	@echo "make test    set up and run the whole suite on SQLite, then on PostgreSQL"
	@echo "make lint    ruff check + ruff format --check + the layer contracts (lint-imports)"
	@echo "make typecheck  mypy with django-stubs over src/"
	@echo "make bench   run the benchmarks and append their numbers to docs/benchmarks.md"
	@echo "make soak    the reliability suite at length (restarts, kill -9, fuzzing)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(if $(findstring local,$(EXTRAS)),$(PY) -m pip install --quiet "$(TORCH)")
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@touch $@

install: $(STAMP)

demo: $(DEMO_STAMP)
	cd example && ../$(PY) manage.py migrate --noinput -v 0
	cd example && ../$(PY) manage.py automate_demo

# The admin browser test drives Debian's chromium through Playwright (never a browser that
# Playwright downloads). Installed when missing and this user may; otherwise that test says so.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is not installed: the admin browser test will skip (fail in CI)"; \
	  fi; }

test: install browser
	$(PY) -m django makemigrations --check --dry-run --settings=tests.settings
	cd example && ../$(PY) manage.py check --fail-level WARNING
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

test-sqlite: install
	AUTOMATE_TEST_DB=sqlite $(PY) -m pytest $(PYTEST_ARGS)

test-postgres: install
	AUTOMATE_TEST_DB=postgres $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests example benchmarks
	$(VENV)/bin/ruff format --check src tests example benchmarks
	PYTHONPATH=src:. $(VENV)/bin/lint-imports --no-cache

typecheck: install
	PYTHONPATH=src:. $(VENV)/bin/mypy src

format: install
	$(VENV)/bin/ruff format src tests example benchmarks
	$(VENV)/bin/ruff check --fix src tests example benchmarks

# Needs PostgreSQL (BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
# and Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/14); each script appends its
# table to docs/benchmarks.md. BENCH_EVENTS sets the pipeline's events per cell. The ingest
# benchmark loads its servers with wrk (apt install wrk), else with benchmarks.loadgen.
BENCH_EVENTS ?= 10000
bench: install
	$(PY) -m pip install --quiet "gunicorn>=22" "procrastinate>=3" "dbos>=1" "pyinstrument>=4.6"  # the bench extra
	@command -v wrk >/dev/null || echo "wrk not found (apt install wrk): the ingest benchmark uses the slower Python load generator"
	PYTHONPATH=src:.:example $(PY) -m benchmarks.ingest
	PYTHONPATH=src:.:example $(PY) -m benchmarks.pipeline --events $(BENCH_EVENTS)
	PYTHONPATH=src:.:example $(PY) -m benchmarks.parked --runs $(BENCH_EVENTS) --workers 2
	PYTHONPATH=src:.:example $(PY) -m benchmarks.ratelimit
	PYTHONPATH=src:.:example $(PY) -m benchmarks.outgoing
	PYTHONPATH=src:.:example $(PY) -m benchmarks.rag
	PYTHONPATH=src:.:example $(PY) -m benchmarks.observability
	PYTHONPATH=src:.:example $(PY) -m benchmarks.scaling

# The reliability suite at length, on PostgreSQL: 50,000 fuzzed webhooks, 1,000 events
# through each restart, plus the kill -9 crash tests. Needs redis-server; about 10 minutes.
SOAK_FUZZ ?= 50000
SOAK_EVENTS ?= 1000
soak: install
	AUTOMATE_TEST_DB=postgres AUTOMATE_FUZZ_REQUESTS=$(SOAK_FUZZ) \
	AUTOMATE_RESTART_EVENTS=$(SOAK_EVENTS) $(PY) -m pytest tests/reliability -s -q

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
