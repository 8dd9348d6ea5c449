# One command per thing a user does; each does its own set-up, idempotently.
#   make lab     database up + JupyterLab on notebooks/ (the kit's kernel registered)
#   make report  execute every notebook headless, write report/
#   make test    the whole test suite (starts what it needs)
#   make bench   the benchmarks in benchmarks/
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KIT := $(VENV)/bin/pgfactory-kit
KERNEL_NAME := pgfactory-kit
PYTEST_ARGS ?=
REPORT_ARGS ?=  # e.g. REPORT_ARGS=--quick (CI sizes) or "--only 01"

.PHONY: setup up down status lab report test test-fast bench lint clean

$(VENV)/.installed: pyproject.toml
	@echo "==> Creating $(VENV) and installing the kit (first run takes a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev,compare,repo2docker]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL_NAME) --display-name "Python (pgfactory-kit)"
	@touch $@

setup: $(VENV)/.installed

up: setup
	$(KIT) up

down:
	@if [ -x $(KIT) ]; then $(KIT) down; fi

status: setup
	$(KIT) status

lab: up
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --MultiKernelManager.default_kernel_name=$(KERNEL_NAME) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

report: up
	$(KIT) report --out report $(REPORT_ARGS)

test: up
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: up
	$(PY) -m pytest -m "not slow and not browser and not notebooks" $(PYTEST_ARGS)

bench: up
	$(PY) benchmarks/run_all.py

lint: setup
	$(VENV)/bin/ruff check pgfactory_kit tests benchmarks

clean: down
	rm -rf report bench-results test-artifacts
