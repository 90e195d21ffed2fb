# Two commands on a fresh machine: `make demo` (main job end to end) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench env clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: a looser requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

env: $(BIN)/.installed

demo: env
	$(BIN)/python -m jobs.data experiment=demo

test: env
	$(BIN)/python -m pytest -q

lint: env
	$(BIN)/ruff check ray_ml jobs tests benchmarks hydra_plugins
	$(BIN)/mypy

bench: env
	$(BIN)/python -m benchmarks.bench_data

clean:
	rm -rf $(VENV) runs
