# One entry point for every routine task. `make install` is idempotent: it re-installs only when a
# requirements file changed since the last successful install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
REQS := requirements/$(if $(HAS_CUDA),cuda,cpu).txt
STAMP := $(VENV)/.installed-$(if $(HAS_CUDA),cuda,cpu)

.PHONY: install test test-slow lint data train bench bench-data bench-scale clean

install: $(STAMP)

$(STAMP): requirements/common.txt requirements/cpu.txt requirements/cuda.txt requirements/dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(REQS) -r requirements/dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

data: install
	$(PY) preprocess_public_data.py --dataset ml-100k

train: data
	$(PY) main.py --gin_config_file=configs/ml-100k/hstu.gin

bench: install
	$(PY) -m generative_recommenders.bench

bench-data: install
	$(PY) benchmarks/bench_data.py

bench-scale: data
	$(PY) benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
