# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install l2b, train L2B on the embedded digits data (40 % noise)
#   make test   create .venv, install l2b with its test and docs extras, run the test suite
# (make lint: ruff check and ruff format --check, as CI runs them before the tests;
#  make docs: the documentation site and API reference into site/, strict, as CI builds it)
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch must be installed before anything that depends on torch, or pip pulls
# the CUDA build (several GB). Override TORCH_SPEC / TORCH_INDEX for other machines, e.g.
#   make TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu test
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.l2b-installed

.PHONY: run test lint docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	touch $@

run: $(STAMP)
	$(BIN)/l2b train

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mkdocs.yml: the README and docs/*.md, the API reference from the docstrings, the registries'
# choice lists; any warning (a broken link, a public name without a docstring) fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/step_cost.py

clean:
	rm -rf $(VENV) runs build site src/*.egg-info
