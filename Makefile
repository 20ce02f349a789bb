# Two commands a new user needs: `make run` (demo search) and `make test` (whole suite).
# Both create .venv and install the project first (CPU TensorFlow; see README for GPU).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu,dev,postgres]'
	$(PY) -m pip install -q 'torch==2.13.0'  # CPU build (for the gp sampler's tests); GPU users: '.[gp]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/automl search image_cnn --data digits --trials 12 --epochs 15 --seed 0

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) mlruns/* .pytest_cache
