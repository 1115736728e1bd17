# TCKR — the two commands: `make study` (the whole mini study, offline) and `make test`.
# Both set up everything themselves: the Debian Fashion-MNIST package and the venv at .venv.

SHELL := /bin/bash
PYTHON_BASE ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha256sum requirements.txt pyproject.toml | sha256sum | cut -c1-12)
VENV_CACHE ?= $(HOME)/.cache/tckr/venv-$(REQ_HASH)
STAMP := $(VENV)/.tckr-$(REQ_HASH)
CONFIG ?= configs/mini.yaml
RESULTS ?= results/mini results/mini-seeds results/mini-full results/mini-full-seeds results/mini-leaky
RUN ?=
PYTEST_ARGS ?=

.PHONY: help setup data venv study figures test test-slow test-all bench lab clean-venv

help:
	@echo "make study [CONFIG=configs/mini.yaml] [RUN=runs/<id>]  run every phase notebook, 00_data ... 09_figures (papermill)"
	@echo "make figures [RUN=runs/<id>]                          redraw the figures of the committed result folders"
	@echo "                                                      (results/mini, -seeds, -full, -full-seeds, -leaky) into images/, or of a run"
	@echo "make test                                             fast tests + the tiny end-to-end notebook chain"
	@echo "make test-slow                                        the slow-marked checks (SD2 architecture, ...)"
	@echo "make bench                                            benchmarks under bench/"
	@echo "make lab                                              JupyterLab on the project's venv"

setup: data venv

data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
	  || echo "WARNING: apt-get could not install dataset-fashion-mnist; Fashion-MNIST will come from the Hugging Face hub (online only)"; \
	else echo "WARNING: apt is not usable here (needs root): Fashion-MNIST will come from the Hugging Face hub (online only)"; fi

# The venv lives in a cache folder keyed by the requirements (reused across clones) and .venv links to it;
# a cold run builds it from scratch. The package itself is always (re)installed editable from this clone.
venv: $(STAMP)
	@$(PY) -m pip install -q --no-deps --no-build-isolation -e . >/dev/null

$(STAMP): requirements.txt pyproject.toml
	@if [ -e $(VENV) ] && [ ! -e $(STAMP) ] && [ -L $(VENV) ]; then rm $(VENV); fi
	@if [ ! -e $(VENV) ]; then \
	  if [ ! -e $(VENV_CACHE)/.complete ]; then \
	    echo "creating the venv in $(VENV_CACHE) (torch $(shell grep '^torch==' requirements.txt)): several minutes, once"; \
	    rm -rf $(VENV_CACHE); mkdir -p $(dir $(VENV_CACHE)); \
	    $(PYTHON_BASE) -m venv $(VENV_CACHE) && \
	    $(VENV_CACHE)/bin/python -m pip install -q --upgrade pip && \
	    $(VENV_CACHE)/bin/python -m pip install -q -r requirements.txt && \
	    touch $(VENV_CACHE)/.complete; \
	  fi; \
	  ln -s $(VENV_CACHE) $(VENV); \
	else \
	  $(PY) -m pip install -q -r requirements.txt; \
	fi
	@touch $(STAMP)

study: setup
	$(VENV)/bin/tckr study $(CONFIG) $(if $(RUN),--run-dir $(RUN),)

figures: venv
	$(if $(RUN),$(VENV)/bin/tckr figures --run-dir $(RUN),$(VENV)/bin/tckr report figures $(RESULTS))

test: setup
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
