# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: demo test check lint bench clean-demo venv

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: a wider range would pull the CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	# BLEnD's official Persian and Indonesian lemmatizers, without their clashing pins (pyproject.toml)
	$(PY) -m pip install --quiet --no-deps hazm==0.10.0 nlp_id==0.1.23.0
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config.yaml
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config.yaml --report results/report.html

test: $(STAMP)
	$(VENV)/bin/pytest -ra

check: $(STAMP)
	$(VENV)/bin/ruff check src scripts tests benchmarks
	$(VENV)/bin/snakemake --lint --cores 1

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean-demo:
	rm -rf results .snakemake
