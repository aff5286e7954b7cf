# Convenience targets; each is the same command the README gives.
VENV ?= .venv
PIP = $(VENV)/bin/pip install -c constraints.txt

.PHONY: run test lint bench

$(VENV)/bin/python:
	python3 -m venv $(VENV)

run: $(VENV)/bin/python   ## install everything and run the main job on the synthetic default
	$(PIP) -e ".[all]" && $(VENV)/bin/h2rec pipeline

test: $(VENV)/bin/python  ## install test dependencies and run the whole suite
	$(PIP) -e ".[all,dev]" && $(VENV)/bin/python -m pytest

lint:
	$(VENV)/bin/ruff check src tests benchmarks && $(VENV)/bin/ruff format --check src tests benchmarks

bench:
	$(VENV)/bin/python benchmarks/bench_data.py
