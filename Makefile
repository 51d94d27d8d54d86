# Two commands on a fresh machine with Python: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run run-s3 test lint docs bench dist clean

$(STAMP): setup.cfg pyproject.toml
	@echo "==> Creating the virtual environment $(VENV) (first run, or setup.cfg changed)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> Upgrading pip in $(VENV)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "==> Installing Flask-Store-NG with its S3, test, docs and example tools (a minute or two the first time)"
	$(BIN)/python -m pip install --progress-bar on -e ".[dev,example]"
	touch $(STAMP)
	@echo "==> $(VENV) is ready; later runs skip these steps"

run: $(STAMP)  ## start the example app on the local store
	$(BIN)/flask --app example_app run --debug

run-s3: $(STAMP)  ## start the example app on S3: a moto server on a free local port, no AWS
	$(BIN)/python -m example_app.dev_s3

test: $(STAMP)  ## run every test (starts moto, redis and Chromium as the tests need them)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check flask_store tests example_app benchmarks
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)  ## compare with the peers and rewrite BENCHMARKS.md (about 10 minutes; not part of test)
	$(BIN)/python -m benchmarks --big $(BENCH_ARGS)

dist: $(STAMP)  ## build the sdist and the wheel into dist/ and check them with twine
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build .pytest_cache .mypy_cache .ruff_cache
