# The two commands of the quickstart. Each builds .venv from nothing when it is missing or stale.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

# Exact versions come from requirements.lock (a pip constraints file), so every machine gets the
# stack these tests passed on. torch/torchvision wheels are taken from the local disk when present.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "pip==26.3"
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
	@touch $@

install: $(STAMP)

# A real benchmark, declared in conf/experiment/demo.yaml: 2 synthetic tasks x prithvi_tiny, 4 trials per cell.
demo: install
	$(PY) -m bench -m experiment=demo

# Two workers: the cluster tests (one group, on one worker: they share the Ray and SLURM clusters)
# wait on schedulers and sleeps most of the time, while the other worker trains.
test: install
	$(PY) -m pytest -n 2 --dist loadgroup

clean:
	rm -rf $(VENV)
