# Set-up contract: `make demo` and `make test` each create .venv if missing,
# install torch==2.13.0 first (so pip never picks a CUDA build by itself),
# then install gossamer in editable mode: `make demo` what a run needs, `make test`
# also the dev extras (pytest, ruff, the tracking clients the tests read back).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gossamer-installed
DEV_STAMP := $(VENV)/.gossamer-dev-installed

.PHONY: install install-dev demo test lint bench clean

install: $(STAMP)

install-dev: $(DEV_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

demo: install
	$(VENV)/bin/gossamer run --out runs/demo --force

test: install-dev
	$(PY) -m pytest -q

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks examples

bench: install
	$(PY) benchmarks/engine.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
