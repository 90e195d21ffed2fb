# Two commands on a fresh machine: `make demo` (main job end to end) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench bench-tune-smoke env browser clean

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: a looser requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/pip install -q -e '.[bohb]' || echo "hpbandster could not be built here: BOHB will be reported 'not run'"
	touch $@

env: $(BIN)/.installed

# Headless Chromium for tests/e2e/test_report_browser.py (Debian's package; best effort: the
# test skips itself, saying why, where it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; } \
	  || echo "chromium could not be installed: the report's browser test will be skipped"

demo: env
	$(BIN)/python -m jobs.pipeline experiment=demo

test: env browser
	$(BIN)/python -m pytest -q

lint: env
	$(BIN)/ruff check ray_ml jobs tests benchmarks hydra_plugins
	$(BIN)/mypy

bench: env
	$(BIN)/python -m benchmarks.bench_data

# The tuning protocol's CI smoke: 2 tasks x 3 seeds, every method, replayed (< 5 min, no Ray).
bench-tune-smoke: env
	$(BIN)/python -m benchmarks.bench_tune_protocol --smoke

clean:
	rm -rf $(VENV) runs
