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

# s3rver, a real S3-compatible server from npm that the tests run Flask-Store against (see
# tests/s3rver_server.py), installed inside the virtualenv. Without npm its tests are skipped
# (a failure under CI=true); keep S3RVER_VERSION in step with the one in that file.
S3RVER_VERSION := 3.7.1
S3RVER := $(VENV)/node/node_modules/.bin/s3rver

$(S3RVER): | $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		echo "==> Installing s3rver $(S3RVER_VERSION) with npm into $(VENV)/node"; \
		npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error \
			s3rver@$(S3RVER_VERSION); \
	else \
		echo "==> npm is missing: the tests on s3rver will be skipped (apt-get install nodejs npm)"; \
	fi

# Uppy, the browser's resumable uploader: the example app's "large file" page (/large) loads
# its prebuilt bundle (window.Uppy, with the tus plugin and the status bar) and its style
# sheet from $(VENV)/node through two fixed routes in example_app/views.py (no CDN), and
# tests/test_tus_browser.py drives it in Chromium. 5.2.4: the newest Uppy whose npm install is
# clean on Node 20 (6.x needs Node 22). The stamp names the version, so bumping it reinstalls.
# Without npm, or offline, the page says what to do and its browser test is skipped (a
# failure under CI=true).
UPPY_VERSION := 5.2.4
UPPY := $(VENV)/node/.uppy-$(UPPY_VERSION)

$(UPPY): | $(STAMP)
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "==> npm is missing: the large-file page cannot upload and its browser test is skipped (apt-get install nodejs npm)"; \
	elif echo "==> Installing Uppy $(UPPY_VERSION) with npm into $(VENV)/node" && \
		npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error --save-exact \
			uppy@$(UPPY_VERSION); then \
		touch $@; \
	else \
		echo "==> npm could not install Uppy: the large-file page cannot upload until it does"; \
	fi

run: $(STAMP) $(UPPY)  ## start the example app on the local store (npm installs Uppy for /large)
	$(BIN)/flask --app example_app run --debug

run-s3: $(STAMP) $(UPPY)  ## start the example app on S3: a moto server on a free local port, no AWS
	$(BIN)/python -m example_app.dev_s3

test: $(STAMP) $(S3RVER) $(UPPY)  ## run every test (starts moto, s3rver, redis and Chromium as needed)
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
