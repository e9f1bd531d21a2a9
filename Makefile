# The two commands of the quickstart. Each builds .venv from nothing when it is missing or stale.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint docs clean

# Exact versions come from requirements.lock (a pip constraints file), so every machine gets the
# stack these tests passed on. torch/torchvision wheels are taken from the local disk when present.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "pip==26.3"
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
	@touch $@

install: $(STAMP)

# A real benchmark, declared in conf/experiment/demo.yaml: 2 synthetic tasks x prithvi_tiny, 4 trials per cell,
# then its report (multirun_outputs/latest is the newest sweep; its real path names the report).
demo: install
	$(PY) -m bench -m experiment=demo
	@sweep="$$(cd multirun_outputs/latest && pwd -P)" && $(PY) -m bench.report "$$sweep" \
		&& echo "The demo's report: $$sweep/report/report.html"

# Three workers on two cores, a whole test file at a time (the tests of a file share its cluster:
# Ray in test_ray.py, SLURM in test_slurm.py), the longest files first (tests/conftest.py; xdist's
# own reordering is off). Much of the suite waits on schedulers, jobs and servers, which a third
# worker fills. (--dist loadgroup would be finer, but pytest-xdist 3.8 cannot group tests under
# pytest 9.)
test: install
	$(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder

# ruff (lint and format) over the code, mypy over src/ (standard for bench, strict for the sweeper:
# pyproject.toml's [tool.mypy]).
lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy

# The docs site (docs/, mkdocs.yml) into site/; --strict fails on a broken link or a page left out of the nav.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV)
