# The README's commands. Each one creates .venv and installs everything on first use.
# Override the torch pin for your platform, e.g. `make test TORCH_SPEC="torch>=2.4"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test style lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hf-seq2seq demo

# CI (.ci/run) and the pre-commit hook (.pre-commit-config.yaml) run these same gates.
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

style: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# ruff (incl. the C901 / PLR0915 size limits of pyproject.toml), formatting, and the one-way import graph
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_import_graph.py

clean:
	rm -rf $(VENV) build *.egg-info
