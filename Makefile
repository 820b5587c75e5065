# mmakd: set up an environment and run the demo or the tests.
#
#   make demo       create .venv if needed, then run the demo: detection and
#                   segmentation (tools/demo.py --task all, < 30 min on 2
#                   CPU cores); DEMO_TASK=det|seg|mgkd runs one task
#   make test       create .venv if needed, then run the tests (not `slow`,
#                   under 10 min on 2 CPU cores)
#   make test-slow  only the slow end-to-end tests (training runs, the
#                   demo, kill -9 / --resume, one-command distillation;
#                   CI runs them after `make test`)
#   make test-all   every test, the slow end-to-end ones included
#   make test-resume
#                   only the kill -9 / --resume tests (slow, about 3 min)
#   make test-pair  only one-command distillation end to end (slow, about
#                   3 min: the demo pairs from the command, every stock
#                   pair's step)
#   make env        only create/update the environment
#   make env TORCH=2.14.1
#                   the same stack on another torch (2.13 or newer) with
#                   its matching torchvision, in .venv-torch2.14.1; mmcv is
#                   compiled with the C++ standard that torch's headers need
#                   (tools/misc/build_mmcv.py). `make test TORCH=...` and
#                   `make lint TORCH=...` then use that environment
#   make test-torch TORCH=2.14.1
#                   env + the default tests on that torch, with a summary
#   make lint       flake8, isort and yapf (setup.cfg) over LINT_PATHS and
#                   the copyright line, as CI and .pre-commit-config.yaml
#                   run them; `make format` applies isort and yapf
#
# Variables: PYTHON (interpreter for the venv, default python3), TORCH
# (a torch version; empty: requirements/torch.txt's pinned 2.13.0), VENV
# (.venv, or .venv-torchTORCH), PIP_TORCH_FLAGS (extra pip flags for the
# torch install), MMCV_FIND_LINKS (a folder with a prebuilt mmcv 2.1.0 wheel
# for that torch, tried first; otherwise mmcv is compiled from source,
# 10-30 min on 2 cores, and the wheel kept in .cache/mmcv), PYTEST_ARGS,
# DEMO_TASK (all, det, seg or mgkd).

SHELL := /bin/bash
PYTHON ?= python3
TORCH ?=
ifeq ($(strip $(TORCH)),)
VENV ?= .venv
TORCH_REQS := -r requirements/torch.txt
else
VENV ?= .venv-torch$(TORCH)
# torchvision unpinned: pip resolves the newest one whose requirement admits
# torch==$(TORCH) (up to 0.28 one exact torch each; 0.29.2: torch>=2.14.0).
TORCH_REQS := torch==$(TORCH) torchvision
endif
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_TORCH_FLAGS ?=
MMCV_FIND_LINKS ?=
PYTEST_ARGS ?=
DEMO_TASK ?= all
LINT_PATHS ?= mmakd tools tests configs
COPYRIGHT_PATHS := mmakd tools tests
COPYRIGHT := ^\# Copyright (c) mmakd contributors
STAMP := $(VENV)/.mmakd-env

.PHONY: env demo test test-slow test-all test-resume test-pair test-torch lint format clean-env

env: $(STAMP)

$(STAMP): requirements/torch.txt requirements/build.txt \
		requirements/mminstall.txt requirements/runtime.txt \
		requirements/tests.txt requirements/lint.txt setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@echo "[env] 1/4 torch + torchvision: $(TORCH_REQS)"
	$(PIP) install $(PIP_TORCH_FLAGS) $(TORCH_REQS)
	@$(PY) -c "import torchvision.ops" 2>/dev/null || { \
	  echo "[env] torchvision cannot load its ops next to the torch pip" \
	       "picked (a CPU-only torch from a local wheel folder?)."; \
	  echo "[env] reinstalling torch from PyPI with pip --isolated"; \
	  $(PIP) --isolated install --force-reinstall $(TORCH_REQS); }
	$(PY) -c "import torch, torchvision; print('[env] torch', \
	  torch.__version__, '+ torchvision', torchvision.__version__)"
	@echo "[env] 2/4 mmcv 2.1.0 with ops (compiled, 10-30 min on 2" \
	      "cores, unless MMCV_FIND_LINKS or .cache/mmcv has a wheel)"
	$(PIP) install -r requirements/build.txt
	$(PY) tools/misc/build_mmcv.py \
	  $(if $(MMCV_FIND_LINKS),--find-links $(MMCV_FIND_LINKS))
	@echo "[env] 3/4 OpenMMLab packages and the rest"
	$(PIP) install -r requirements/mminstall.txt -r requirements/runtime.txt \
	  -r requirements/tests.txt -r requirements/lint.txt
	@echo "[env] 4/4 mmakd (editable)"
	$(PIP) install --no-deps -e .
	$(PY) -c "import mmakd, mmcv.ops; print('[env] ready: mmakd', mmakd.__version__)"
	@touch $@

demo: $(STAMP)
	$(PY) tools/demo.py --task $(DEMO_TASK)

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

# The default tests on TORCH's environment (built if needed), then one line
# with the versions, pytest's counts and the wall time.
$(if $(filter test-torch,$(MAKECMDGOALS)),$(if $(strip $(TORCH)),,\
  $(error make test-torch needs a torch version: make test-torch TORCH=2.14.1)))

test-torch: $(STAMP)
	@start=$$(date +%s); \
	  $(PY) -m pytest tests -q $(PYTEST_ARGS) | tee $(VENV)/test-torch.log; \
	  status=$${PIPESTATUS[0]}; \
	  echo "[test-torch] torch $$($(PY) -c 'import torch; \
	    print(torch.__version__)'): $$(tail -1 $(VENV)/test-torch.log \
	    | tr -d '=') (make test-torch: $$(( $$(date +%s) - start )) s)"; \
	  exit $$status

test-slow: $(STAMP)
	$(PY) -m pytest tests -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest tests -m "slow or not slow" $(PYTEST_ARGS)

test-resume: $(STAMP)
	$(PY) -m pytest tests/test_tools/test_kill_resume.py -m slow $(PYTEST_ARGS)

test-pair: $(STAMP)
	$(PY) -m pytest tests/test_tools/test_train_pair.py \
	  tests/test_apis/test_distill_pair.py -m slow $(PYTEST_ARGS)

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
