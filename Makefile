# The two Quick-start commands: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test setup sysdeps lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[test]'
	touch $@

demo: setup
	$(BIN)/ollama-wire demo

sysdeps:
	@bash .ci/sysdeps.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup sysdeps lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/proxy_overhead.py
	$(BIN)/python benchmarks/pcap_speed.py

clean:
	rm -rf $(VENV) logs .pytest_cache .ruff_cache .mypy_cache
