# Two commands take a fresh clone to green: `make demo` and `make test`.
# Everything they need is installed into .venv; all local state lives in .local/ (ignored).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

LOCAL := $(CURDIR)/.local
export AIRFLOW_HOME ?= $(LOCAL)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PIPELINE_LOCAL_DIR ?= $(LOCAL)
export PIPELINE_REPORT_DIR ?= $(LOCAL)/reports

.PHONY: demo test stack install browser clean help

help:
	@echo "make demo   set up .venv and run the demo DAG end to end on the local stack"
	@echo "make test   set up .venv (and Debian's chromium, for the browser test) and run the whole test suite"
	@echo "make stack  run the local cloud in the foreground; writes .local/stack.env for Airflow"
	@echo "make clean  remove .local/ (demo data, Airflow state, reports); keeps .venv"
	@echo "make bench  run the benchmarks (BENCH_MODE=quick|full; make bench-full) written up in BENCHMARKS.md"

install: $(STAMP)

# Re-install whenever the lock or the package metadata changes. Two distributions, both editable:
# the pipeline (what production installs) and the local cloud (localcloud/, never in production).
$(STAMP): requirements.txt pyproject.toml localcloud/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . -e localcloud
	@touch $@

demo: $(STAMP)
	$(PY) -m localcloud.demo $(DEMO_ARGS)

test: $(STAMP) browser
	$(PY) -m pytest

# The report page's browser test (tests/dags/test_report_plugin.py) drives Debian's chromium headless.
# Installed here when missing, quietly (as root, or through sudo), and only for `make test`: the demo and
# production need no browser. Without it the test skips, or fails under CI.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  mkdir -p $(LOCAL)/logs; echo "installing Debian's chromium for the browser test (log: $(LOCAL)/logs/apt-chromium.log)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; } \
	    > $(LOCAL)/logs/apt-chromium.log 2>&1 \
	  || { tail -5 $(LOCAL)/logs/apt-chromium.log; echo "chromium could not be installed: the browser test will skip"; }; }

# The local cloud (OSS + OpenSearch servers, the demo bucket) until Ctrl-C, for Airflow under a real
# scheduler: `source .local/stack.env` in the shell that starts Airflow (see README).
stack: $(STAMP)
	$(PY) -m localcloud.stack $(STACK_ARGS)

clean:
	rm -rf $(LOCAL)

# Benchmarks (bench/, written up in BENCHMARKS.md): one JSON line per result on stdout.
# memory, warehouse (MaxCompute write via pyodps vs fs), rows, listing; one: `python -m bench.run --only NAME`.
# BENCH_MODE=quick (default: CI-sized, a few minutes) or full (the issue's sizes, about half an hour).
BENCH_MODE ?= quick

.PHONY: bench bench-full

bench: $(STAMP)
	@$(PY) -m bench.run --mode $(BENCH_MODE)

bench-full: $(STAMP)
	@$(PY) -m bench.run --mode full
