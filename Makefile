# Django Automate: `make demo` and `make test` work from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,postgres,redis,openai,anthropic,pinecone,cohere,local,mcp
# The `local` extra (sentence-transformers) needs torch. Installed first and pinned, so pip
# does not pick a multi-GB CUDA build; see README ("CPU-only torch") for other machines.
TORCH ?= torch==2.13.0
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=

.PHONY: help install browser demo test test-sqlite test-postgres lint typecheck format bench clean

help:
	@echo "make demo    set up and run the demo (embedded: SQLite, in-process worker)"
	@echo "make test    set up and run the whole suite on SQLite, then on PostgreSQL"
	@echo "make lint    ruff check + ruff format --check"
	@echo "make typecheck  mypy with django-stubs over src/"
	@echo "make bench   run the benchmarks and append their numbers to docs/benchmarks.md"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(if $(findstring local,$(EXTRAS)),$(PY) -m pip install --quiet "$(TORCH)")
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP)

demo: install
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
	$(VENV)/bin/ruff check src tests example
	$(VENV)/bin/ruff format --check src tests example

typecheck: install
	PYTHONPATH=src:. $(VENV)/bin/mypy src

format: install
	$(VENV)/bin/ruff format src tests example
	$(VENV)/bin/ruff check --fix src tests example

bench: install
	@echo "benchmarks/ arrives with the benchmarks issue"; exit 1

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
