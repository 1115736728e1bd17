# TCKR — the two commands: `make study` (the whole mini study, offline) and `make test`.
# Both set up everything themselves: the Debian Fashion-MNIST package and the venv at .venv.

SHELL := /bin/bash
PYTHON_BASE ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-12)
VENV_CACHE ?= $(HOME)/.cache/tckr/venv-$(REQ_HASH)
CACHE := $(abspath $(VENV_CACHE))
STAMP := $(VENV)/.tckr-cache-$(shell printf %s "$(CACHE)" | sha256sum | cut -c1-12)  # which cache .venv reads
INSTALLED := $(VENV)/.tckr-editable
CONFIG ?= configs/mini.yaml
RESULTS ?= results/mini results/mini-seeds results/mini-seeds-5x results/mini-dp results/mini-full results/mini-full-earlier-base results/mini-full-earlier-base-seeds results/mini-leaky results/mini-leaky-earlier-base results/mini-power results/mini-earlier-base results/mini-earlier-base-seeds results/mini-d5000-s16 results/mini-leaky-t2i results/mini-2x
RUN ?=
PYTEST_ARGS ?=

.PHONY: help setup data venv study figures docs example test test-slow test-all bench lab clean-venv

help:
	@echo "make study [CONFIG=configs/mini.yaml] [RUN=runs/<id>]  run every phase notebook, 00_data ... 09_figures (papermill)"
	@echo "make figures [RUN=runs/<id>]                          redraw the figures of the committed result folders"
	@echo "                                                      (RESULTS: results/mini, its -seeds, -full, controls ...) into images/, or of a run"
	@echo "make docs                                             the documentation site (mkdocs-material, --strict) into site/"
	@echo "make example                                          the docs' executed example: notebook 04 on the released classifiers"
	@echo "make test                                             fast tests + the tiny end-to-end notebook chain"
	@echo "make test-slow                                        the slow-marked checks (SD2 architecture, ...)"
	@echo "make bench                                            benchmarks under bench/"
	@echo "make lab                                              JupyterLab on this clone's .venv"

setup: data venv

data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
	  || echo "WARNING: apt-get could not install dataset-fashion-mnist; Fashion-MNIST will come from the Hugging Face hub (online only)"; \
	else echo "WARNING: apt is not usable here (needs root): Fashion-MNIST will come from the Hugging Face hub (online only)"; fi

# Two venvs. The heavy one (torch, jupyter, ... from requirements.txt) is built once in $(VENV_CACHE), keyed by
# requirements.txt and shared by every clone; no clone writes into it. Each clone's .venv is small and its own: its
# python, a .pth file that appends the cache's site-packages to sys.path (a plain path line, so the cache's own .pth
# files are not run: a cache made by the older scheme holds an editable tckr pointing at another clone), a wrapper in
# .venv/bin for every console script of the cache (papermill, jupyter, pytest, lint-imports, ...; run by .venv's
# python), and this clone's package installed editable (.venv/bin/tckr). So `import tckr`, the tckr command and the
# notebook kernels started from .venv load this clone's src/ and write under this clone's runs/.
venv: $(INSTALLED)

$(INSTALLED): $(STAMP) pyproject.toml
	@$(PY) -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
	@touch $@

# A .venv of other requirements, or the symlink into the cache that the older scheme made, is replaced whole (rm -rf
# of a symlink removes the link only).
$(STAMP): requirements.txt
	@if [ ! -e $(CACHE)/.complete ]; then \
	  echo "creating the shared venv in $(CACHE) (torch $(shell grep '^torch==' requirements.txt)): several minutes, once"; \
	  rm -rf $(CACHE); mkdir -p $(dir $(CACHE)); \
	  $(PYTHON_BASE) -m venv $(CACHE) && \
	  $(CACHE)/bin/python -m pip install -q --upgrade pip && \
	  $(CACHE)/bin/python -m pip install -q -r requirements.txt && \
	  touch $(CACHE)/.complete; \
	fi
	@rm -rf $(VENV)
	@$(CACHE)/bin/python -m venv --without-pip $(VENV)
	@$(CACHE)/bin/python -c 'import sysconfig; print("\n".join(dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))))' \
	  > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/tckr-cache.pth"
	@# Jupyter's data (nbconvert templates, JupyterLab's assets, kernel specs) is found under sys.prefix/share/jupyter
	@if [ -d $(CACHE)/share/jupyter ]; then mkdir -p $(VENV)/share && ln -sfn $(CACHE)/share/jupyter $(VENV)/share/jupyter; fi
	@for f in $(CACHE)/bin/*; do \
	  n=$$(basename "$$f"); \
	  if [ -f "$$f" ] && [ ! -e "$(VENV)/bin/$$n" ] && [ "$$n" != tckr ] && head -n1 "$$f" | grep -q '^#!.*python'; then \
	    { echo "#!$(CURDIR)/$(PY)"; tail -n +2 "$$f"; } > "$(VENV)/bin/$$n" && chmod +x "$(VENV)/bin/$$n"; \
	  fi; \
	done
	@touch $@

study: setup
	$(VENV)/bin/tckr study $(CONFIG) $(if $(RUN),--run-dir $(RUN),)

figures: venv
	$(if $(RUN),$(VENV)/bin/tckr figures --run-dir $(RUN),$(VENV)/bin/tckr report figures $(RESULTS))

docs: venv
	$(PY) -m mkdocs build --strict

# The executed example of the docs site: notebook 04 on the released classifiers (phase 00 first, for the splits),
# converted to Markdown with its figures; the repository's absolute path is written as "." .
example: setup
	rm -rf runs/example docs/examples/04_run_evaluate_files
	$(PY) -m tckr.cli study configs/mini.yaml --run-dir runs/example --phases 00_data
	$(PY) -m papermill -k python3 notebooks/04_run_evaluate.ipynb runs/example/notebooks/04_run_evaluate.ipynb \
	  -p run_dir runs/example -p source released
	$(PY) -m jupyter nbconvert --to markdown runs/example/notebooks/04_run_evaluate.ipynb --output-dir docs/examples
	sed -i -e "s|$(CURDIR)/|./|g; s|$(CURDIR)|.|g" -e "/TqdmWarning: IProgress not found/,+1d" docs/examples/04_run_evaluate.md

test: setup
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lab: setup
	$(PY) -m jupyter lab notebooks/

clean-venv:  # this clone's .venv only; the shared cache stays
	rm -rf $(VENV)
