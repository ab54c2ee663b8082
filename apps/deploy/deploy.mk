# MONAI Deploy app (apps/deploy): its own environment, never the core .venv (the SDK pulls holoscan and tritonclient,
# which downgrade protobuf). Included by the root Makefile; paths are relative to the repository root.
PYTHON ?= python3
STAMP ?= .venv/.installed
CORE_PY ?= .venv/bin/python
DEPLOY_VENV := .venv-deploy
DEPLOY_PY := $(DEPLOY_VENV)/bin/python
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed

.PHONY: venv-deploy test-deploy

$(DEPLOY_STAMP): apps/deploy/requirements.txt pyproject.toml apps/torch_stack.py $(STAMP)
	test -x $(DEPLOY_PY) || $(PYTHON) -m venv $(DEPLOY_VENV)
	# torch and its CUDA libraries from the core .venv, not a second 5 GB copy (apps/torch_stack.py says how).
	$(CORE_PY) apps/torch_stack.py $(DEPLOY_VENV)
	$(DEPLOY_PY) -m pip install --quiet --upgrade pip
	$(DEPLOY_PY) -m pip install --quiet -r apps/deploy/requirements.txt
	# The bundle's package `scripts`, editable: the app scores with the bundle, not with a copy of it.
	$(DEPLOY_PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(DEPLOY_STAMP)

venv-deploy: $(DEPLOY_STAMP)

# The core venv too: the tests compare the app's scores with the core environment's tfkt-score.
test-deploy: $(DEPLOY_STAMP) $(STAMP)
	$(DEPLOY_PY) -m pytest apps/deploy/tests -ra $(PYTEST_ARGS)
