# Two commands for a fresh clone: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-core test-fast lint format venv clean

# The MONAI Deploy and MONAI Label apps, each in its own environment (.venv-deploy, .venv-label).
include apps/deploy/deploy.mk apps/label/label.mk

$(STAMP): requirements.txt requirements-dev.txt requirements-export.txt requirements-scale.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The optional extra 'scale' (tfkt-score --engine ray), so its tests run in CI too.
	$(PY) -m pip install --quiet -r requirements-scale.txt
	# The bundle's package, editable, and its commands (tfkt-bundle); setuptools comes with torch.
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	cd tfkt_bundle && ../$(PY) -m scripts.demo

# Everything CI runs: lint, the core suite, then the Deploy and Label apps' suites in their own environments.
test: lint test-core test-deploy test-label

test-core: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: clean-label
	rm -rf $(VENV) $(DEPLOY_VENV) .pytest_cache
