# The README's commands. Each one creates its virtual environment and installs everything on first use.
#
# Three environments, one command each (CONTRIBUTING.md, "Dependencies and the three environments"):
#   make test          .venv         the lock (requirements/lock.txt): what CI gates on and what `make demo` uses
#   make test-oldest   .venv-oldest  every direct dependency at the floor pyproject.toml declares (requirements/oldest.txt)
#   make test-latest   .venv-latest  the newest releases the package index serves, no lock; writes CONTRIBUTING.md's table
#   make lock          rewrites both lock files from pyproject.toml (uv pip compile)
#
# torch is installed on its own, before the rest, from TORCH_SPEC (it is in no lock file), so that it stays a variable
# a user overrides for their platform, e.g. `make test TORCH_SPEC="torch>=2.14"`. The default is the CPU wheel of our
# CI machines. TORCH_OLDEST_SPEC is the floor pyproject.toml declares (2.13: older releases exist for x86_64 Linux
# only as CUDA builds, 8 GB installed, more than CI's disk holds beside the other environments).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_OLDEST_SPEC ?= torch==2.13.0
TORCH_LATEST_SPEC ?= $(TORCH_SPEC)
UV_SPEC ?= uv==0.13.9
LOCK := requirements/lock.txt
OLDEST_LOCK := requirements/oldest.txt
PYTEST_ARGS ?= -n 2 --dist loadfile -q
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-oldest test-latest lock style lint clean

# $(1) venv folder, $(2) torch requirement, $(3) pip options for the rest (the lock as constraints, or --upgrade).
# The torch just installed is then written down as a constraint too, so that nothing (not even --upgrade) replaces it.
define make_venv
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(1)/bin/python -m pip install -q "$(2)"
	$(1)/bin/python -c "from importlib.metadata import version; print('torch==' + version('torch'))" > $(1)/torch-pin.txt
	$(1)/bin/python -m pip install -q -c $(1)/torch-pin.txt $(3) -e ".[dev]"
endef

# The stamp depends on the lock: a changed lock (or pyproject.toml) reinstalls.
$(STAMP): pyproject.toml $(LOCK)
	$(call make_venv,$(VENV),$(TORCH_SPEC),-c $(LOCK))
	touch $(STAMP)

.venv-oldest/.installed: pyproject.toml $(OLDEST_LOCK)
	$(call make_venv,.venv-oldest,$(TORCH_OLDEST_SPEC),-c $(OLDEST_LOCK))
	touch $@

install: $(STAMP)

# JoeyNMT's own environment, for the conversion proof (tests/convert/test_convert_joeynmt.py trains with JoeyNMT's
# code there): not a dependency of ours, so not in the lock; its exact versions are requirements/joeynmt.txt.
JOEYNMT_VENV := .venv-joeynmt
$(JOEYNMT_VENV)/.installed: requirements/joeynmt.txt
	test -x $(JOEYNMT_VENV)/bin/python || $(PYTHON) -m venv $(JOEYNMT_VENV)
	$(JOEYNMT_VENV)/bin/python -m pip install -q --upgrade pip
	$(JOEYNMT_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(JOEYNMT_VENV)/bin/python -c "from importlib.metadata import version; print('torch==' + version('torch'))" > $(JOEYNMT_VENV)/torch-pin.txt
	$(JOEYNMT_VENV)/bin/python -m pip install -q -c $(JOEYNMT_VENV)/torch-pin.txt -r requirements/joeynmt.txt
	touch $@

# eole's own environment, for the conversion proof (tests/convert/test_convert_eole.py trains with eole's code
# there): the same rule as JoeyNMT's; its exact versions are requirements/eole.txt.
EOLE_VENV := .venv-eole
$(EOLE_VENV)/.installed: requirements/eole.txt
	test -x $(EOLE_VENV)/bin/python || $(PYTHON) -m venv $(EOLE_VENV)
	$(EOLE_VENV)/bin/python -m pip install -q --upgrade pip
	$(EOLE_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(EOLE_VENV)/bin/python -c "from importlib.metadata import version; print('torch==' + version('torch'))" > $(EOLE_VENV)/torch-pin.txt
	$(EOLE_VENV)/bin/python -m pip install -q -c $(EOLE_VENV)/torch-pin.txt -r requirements/eole.txt
	touch $@

demo: $(STAMP)
	$(BIN)/hf-seq2seq demo

# CI (.ci/run) and the pre-commit hook (.pre-commit-config.yaml) run these same gates.
test: lint $(JOEYNMT_VENV)/.installed $(EOLE_VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# What a contributor runs while working: everything not marked `slow` (a few minutes).
test-fast: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow"

# The floors: the whole suite with every direct dependency at the version pyproject.toml declares.
test-oldest: .venv-oldest/.installed $(JOEYNMT_VENV)/.installed $(EOLE_VENV)/.installed
	.venv-oldest/bin/python -m pytest $(PYTEST_ARGS) -p no:cacheprovider

# The newest releases, installed afresh each time (no stamp: `--upgrade` is the point). The result and the versions
# go into CONTRIBUTING.md's compatibility table whether the suite passes or not; the target fails if the suite does.
test-latest:
	$(call make_venv,.venv-latest,$(TORCH_LATEST_SPEC),--upgrade --upgrade-strategy eager)
	.venv-latest/bin/python -m pytest $(PYTEST_ARGS) -p no:cacheprovider --junitxml=.venv-latest/junit.xml; \
	status=$$?; .venv-latest/bin/python scripts/compat_table.py --env latest --exit_status $$status \
		--junit .venv-latest/junit.xml; exit $$status

# Both lock files from pyproject.toml's ranges, for Python 3.10+ on every platform (uv's universal resolution).
# torch and the CUDA libraries only it pulls are left out (TORCH_SPEC installs them), and the resolution sees torch as
# the default TORCH_SPEC, so that torch's own dependencies (sympy, networkx...) are locked at what CI installs.
lock: $(VENV)/bin/python
	$(BIN)/python -m pip install -q "$(UV_SPEC)"
	$(BIN)/python scripts/lock.py --torch "$(TORCH_SPEC)" --uv $(BIN)/uv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

style: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# ruff (incl. the C901 / PLR0915 size limits of pyproject.toml), formatting, and the one-way import graph
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/project/test_import_graph.py

clean:
	rm -rf $(VENV) .venv-oldest .venv-latest build *.egg-info
