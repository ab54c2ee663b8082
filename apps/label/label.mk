# MONAI Label app (apps/label): its own environment, since monailabel 0.8.5 needs numpy < 2 and the core has 2.x.
# Included by the root Makefile; paths are relative to the repository root. Runs alone too, once the core .venv
# exists (its torch is shared, see apps/torch_stack.py):
#   make -f apps/label/label.mk test-label
PYTHON ?= python3
STAMP ?= .venv/.installed
CORE_PY ?= .venv/bin/python
LABEL_VENV := .venv-label
LABEL_PY := $(LABEL_VENV)/bin/python
LABEL_STAMP := $(LABEL_VENV)/.installed
LABEL_PYTEST_ARGS ?=

.PHONY: venv-label test-label clean-label

$(LABEL_STAMP): apps/label/requirements.txt apps/label/compat/tfkt_label_compat.py pyproject.toml apps/torch_stack.py \
		$(STAMP)
	test -x $(LABEL_PY) || $(PYTHON) -m venv $(LABEL_VENV)
	# torch and its CUDA libraries from the core .venv, not a second 5 GB copy (apps/torch_stack.py says how).
	$(CORE_PY) apps/torch_stack.py $(LABEL_VENV)
	$(LABEL_PY) -m pip install --quiet --upgrade pip
	# --no-deps: requirements.txt is the complete resolved set (see its header), so pip adds nothing to it.
	$(LABEL_PY) -m pip install --quiet --no-deps -r apps/label/requirements.txt
	# The bundle's package (scripts), editable, as in the core .venv; setuptools is in requirements.txt.
	$(LABEL_PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	# monailabel's pydicom-seg import under pydicom 3: apps/label/compat/tfkt_label_compat.py says why.
	printf '%s\nimport tfkt_label_compat\n' "$(CURDIR)/apps/label/compat" \
		> "$$($(LABEL_PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/tfkt_label_compat.pth"
	$(LABEL_PY) -c 'import monailabel.interfaces.app, scripts.ctio.slices'
	touch $(LABEL_STAMP)

venv-label: $(LABEL_STAMP)

test-label: $(LABEL_STAMP)
	$(LABEL_PY) -m pytest apps/label/tests -ra $(LABEL_PYTEST_ARGS)

clean-label:
	rm -rf $(LABEL_VENV)
