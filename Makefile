# mmakd: set up an environment and run the demo or the tests.
#
#   make demo       create .venv if needed, then run the demo
#   make test       create .venv if needed, then run the tests (not `slow`)
#   make test-all   every test, the slow end-to-end ones included
#   make env        only create/update the environment
#   make lint       flake8, isort and yapf (setup.cfg) over LINT_PATHS and
#                   the copyright line, as CI and .pre-commit-config.yaml
#                   run them; `make format` applies isort and yapf
#
# Variables: PYTHON (interpreter for the venv, default python3), VENV
# (.venv), PIP_TORCH_FLAGS (extra pip flags for the torch install),
# MMCV_FIND_LINKS (a folder with a prebuilt mmcv 2.1.0 wheel; without it
# mmcv is compiled from source, ~18 min on 2 cores), PYTEST_ARGS.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_TORCH_FLAGS ?=
MMCV_FIND_LINKS ?=
PYTEST_ARGS ?=
LINT_PATHS ?= mmakd tools tests configs
COPYRIGHT_PATHS := mmakd tools tests
COPYRIGHT := ^\# Copyright (c) mmakd contributors
STAMP := $(VENV)/.mmakd-env

.PHONY: env demo test test-all lint format clean-env

env: $(STAMP)

$(STAMP): requirements/torch.txt requirements/build.txt \
		requirements/mminstall.txt requirements/runtime.txt \
		requirements/tests.txt requirements/lint.txt setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@echo "[env] 1/4 torch + torchvision"
	$(PIP) install $(PIP_TORCH_FLAGS) -r requirements/torch.txt
	@$(PY) -c "import torchvision.ops" 2>/dev/null || { \
	  echo "[env] torchvision cannot load its ops next to the torch pip" \
	       "picked (a CPU-only torch from a local wheel folder?)."; \
	  echo "[env] reinstalling torch from PyPI with pip --isolated"; \
	  $(PIP) --isolated install --force-reinstall -r requirements/torch.txt; }
	@echo "[env] 2/4 mmcv 2.1.0 with ops (compiles ~18 min on 2 cores" \
	      "unless MMCV_FIND_LINKS has a wheel)"
	$(PIP) install -r requirements/build.txt
	$(PIP) install --no-build-isolation \
	  $(if $(MMCV_FIND_LINKS),--find-links $(MMCV_FIND_LINKS)) \
	  "$$(grep '^mmcv' requirements/mminstall.txt)"
	@echo "[env] 3/4 OpenMMLab packages and the rest"
	$(PIP) install -r requirements/mminstall.txt -r requirements/runtime.txt \
	  -r requirements/tests.txt -r requirements/lint.txt
	@echo "[env] 4/4 mmakd (editable)"
	$(PIP) install --no-deps -e .
	$(PY) -c "import mmakd, mmcv.ops; print('[env] ready: mmakd', mmakd.__version__)"
	@touch $@

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest tests -m "slow or not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m flake8 $(LINT_PATHS)
	$(PY) -m isort --check-only --diff $(LINT_PATHS)
	$(PY) -m yapf --diff --recursive $(LINT_PATHS)
	@missing=$$(find $(COPYRIGHT_PATHS) -name '*.py' \
	  -not -path 'tests/data/configs/*' | xargs grep -L '$(COPYRIGHT)'); \
	  if [ -n "$$missing" ]; then \
	    echo "[lint] no '$(COPYRIGHT)' line:" $$missing; exit 1; fi
	@echo "[lint] flake8, isort, yapf and copyright lines: clean"

format: $(STAMP)
	$(PY) -m isort $(LINT_PATHS)
	$(PY) -m yapf --in-place --recursive $(LINT_PATHS)

clean-env:
	rm -rf $(VENV)
