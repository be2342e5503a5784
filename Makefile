# Quick start:  make run   (fine-tune on the shipped sample, export)   |   make test   (the test suite)
# Both create ./.venv with Python 3.11 and install what they need on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# (No TF_CPP_MIN_LOG_LEVEL here: the entry points hide TensorFlow's start-up noise unless --verbose, kerasbert/cli.py.)

.PHONY: run test lint serve ui notebook bench clean browser compat

$(VENV)/.runtime: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing runtime requirements into $(VENV) (first run takes a few minutes)"
	@$(PIP) install -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PIP) install --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import tensorflow, tensorflow_text, keras_hub, tensorflow_serving, streamlit" 2>/dev/null || \
		{ echo "error: the runtime requirements did not install (see pip's output above)"; exit 1; }
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	@echo "installing test/benchmark peers (torch CPU, transformers, sentence-transformers) into $(VENV)"
	@# seqeval ships only as a source archive whose legacy setup.py build fails in a fresh venv; PEP 517 builds it.
	@PIP_USE_PEP517=1 $(PIP) install -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import transformers, torch, seqeval, jupyterlab" 2>/dev/null || \
		{ echo "error: the test requirements did not install (see pip's output above)"; exit 1; }
	@touch $@

# Old runtimes for tests/test_compat_runtimes.py: every export kind must load
# and answer the same under the TF + TF-Text that stock tensorflow/serving
# images link. One venv each under .venv-compat/ (not tracked), with only
# tensorflow and tensorflow-text. A stamp per venv; it is redone when this
# Makefile changes (pip then only checks the pins).
COMPAT       := .venv-compat
COMPAT_TF212 := tensorflow==2.12.1 tensorflow-text==2.12.1
COMPAT_TF220 := tensorflow==2.20.0 tensorflow-text==2.20.0

compat: $(COMPAT)/tf2.12/.runtime $(COMPAT)/tf2.20/.runtime

$(COMPAT)/tf2.12/.runtime: COMPAT_PINS = $(COMPAT_TF212)
$(COMPAT)/tf2.20/.runtime: COMPAT_PINS = $(COMPAT_TF220)
$(COMPAT)/%/.runtime: Makefile
	@test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	@echo "installing $(COMPAT_PINS) into $(@D) (old runtime for the export compat test)"
	@$(@D)/bin/python -m pip --disable-pip-version-check -q install $(COMPAT_PINS) 2>&1 | grep -v "^WARNING: Location" || true
	@$(@D)/bin/python -c "import tensorflow, tensorflow_text" 2>/dev/null || \
		{ echo "error: $(COMPAT_PINS) did not install into $(@D) (see pip's output above)"; exit 1; }
	@touch $@

# Headless Chromium for the one real-browser test, and a colour emoji font so that the UI screenshots show
# the emoji of the examples (Debian packages; best effort, the test is skipped with a reason without chromium).
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
browser:
	@{ command -v chromium >/dev/null 2>&1 && [ -e $(EMOJI_FONT) ]; } || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null 2>&1; }; } || true
	@command -v chromium >/dev/null 2>&1 || echo "note: chromium is not installed; the browser test will be skipped"

run: $(VENV)/.runtime
	$(PY) -m kerasbert.train $(ARGS)

# Two pytest-xdist workers, one test file each at a time (module fixtures stay shared within a file): most
# tests are single-threaded Python (tracing, servers, subprocesses), so two workers halve the wall time on
# 2 cores. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(VENV)/.dev browser compat lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Lint and format check (ruff, configured in pyproject.toml); `make test` runs it first.
# --no-cache: nothing written into the checkout.
lint: $(VENV)/.dev
	$(PY) -m ruff check --no-cache . && $(PY) -m ruff format --no-cache --check .

serve: $(VENV)/.runtime
	$(PY) -m kerasbert.serve --port 8500 --model_name kerasbert --model_base_path exports/kerasbert

ui: $(VENV)/.runtime
	$(VENV)/bin/streamlit run ui/app.py

# JupyterLab on notebooks/, with this venv's Python as the kernel (jupyterlab is in requirements-dev.txt). It opens
# a browser where there is one; more flags through JUPYTER_ARGS, e.g. make notebook JUPYTER_ARGS="--no-browser --port 8890".
# (Jupyter refuses to run as root without --allow-root; this machine's CI runs as root.)
notebook: $(VENV)/.dev
	$(VENV)/bin/jupyter lab --notebook-dir notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(JUPYTER_ARGS)

bench: $(VENV)/.dev
	$(PY) benchmarks/bench_foundation.py

clean:
	rm -rf runs exports .pytest_cache
