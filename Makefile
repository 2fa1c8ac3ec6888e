# Two entry points (README): `make book` builds the HTML report, `make test` runs every test.
# Each sets up its own virtual environment from requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test unit notebooks sync clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Open _build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest tests book/ --nbmake --nbmake-timeout=900 -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest tests -p no:cacheprovider

# Regenerate the paired .ipynb files from the .md chapters (the .md files are the source of truth);
# --update keeps the cell ids of an existing notebook, so that an edit shows as a small diff.
sync: $(STAMP)
	$(BIN)/jupytext --update --to ipynb book/*.md

clean:
	rm -rf _build
