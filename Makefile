# Two entry points: `make demo` (the built-in demo search) and `make test` (the suite).
# Each creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
# Pinned CPU build served locally; a torch already importable in the venv is kept
# (e.g. `make VENV_FLAGS=--system-site-packages` on a GPU machine with its own torch).
TORCH ?= torch==2.13.0
VENV_FLAGS ?=
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nas needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all,test]"
	touch $@

demo: install
	$(VENV)/bin/nas search

# lint and type-check the public API, then the suite with every docstring example
test: install lint
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info
