# Two commands a new user needs: `make run` (demo search) and `make test` (whole suite).
# Both create .venv and install the project first (CPU TensorFlow; see README for GPU).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run check test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu,dev,postgres,ray]'
	$(PY) -m pip install -q 'torch==2.13.0'  # CPU build (for the gp sampler's tests); GPU users: '.[gp]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/automl search image_cnn --data digits --trials 12 --epochs 15 --seed 0

# The project's habits first (seconds), then the suite: lint, format, import contracts, types.
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

# Two pytest workers, each taking whole files (module fixtures built once; the Ray tests on one worker):
# the suite's tests wait on subprocesses and servers as much as they compute, so 2 cores run it ~2x faster.
test: check
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=20

bench: $(STAMP)
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) mlruns/* .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
