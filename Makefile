# The two Quick-start commands: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test setup sysdeps lint bench clean compat-mitmproxy12 fuzz real-ollama real-ollama-test

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
	$(BIN)/pytest -m "not real_ollama"
	$(MAKE) compat-mitmproxy12
	$(MAKE) real-ollama-test

# A real Ollama v0.24.0 (built with Go from the module proxy) and two small models, cached in
# ~/.cache/ollama-wire: built once, reused later (tests/support/real_ollama.py; docs/real-ollama.md).
real-ollama: setup sysdeps
	$(BIN)/python -m tests.support.real_ollama build

# The real_ollama tier runs in a network namespace with only loopback, so nothing can leave the machine:
# `unshare -n` as root, `unshare -rn` (a user namespace) otherwise.
REAL_OLLAMA_PYTEST ?= $(BIN)/pytest -p no:cacheprovider -m real_ollama
real-ollama-test: setup sysdeps
	$(BIN)/python -m tests.support.real_ollama build --skip-without-go
	@if [ "$$(id -u)" -eq 0 ]; then ns="unshare -n"; else ns="unshare -rn"; fi; \
	$$ns true 2>/dev/null || { echo "real-ollama-test: no network namespace here ($$ns failed): tier skipped, see docs/real-ollama.md"; exit 0; }; \
	start=$$(date +%s); \
	$$ns sh -c 'ip link set lo up && exec $(REAL_OLLAMA_PYTEST) $(REAL_OLLAMA_ARGS)'; rc=$$?; \
	echo "real-ollama-test: tier took $$(( $$(date +%s) - start )) s"; exit $$rc

# The addon must keep working on mitmproxy 12.x, which needs Python 3.12: run its tests there too when a
# Python 3.12 is around (pyenv or PATH); otherwise say so and skip.
VENV12 ?= .venv-mitmproxy12
compat-mitmproxy12:
	@py312="$$(bash .ci/python312.sh)"; \
	if [ -z "$$py312" ]; then echo "compat-mitmproxy12: no Python 3.12 found, skipped"; exit 0; fi; \
	set -e; \
	[ -x $(VENV12)/bin/mitmdump ] || { "$$py312" -m venv $(VENV12) && \
	  $(VENV12)/bin/pip install --quiet --disable-pip-version-check -e '.[test]' 'mitmproxy>=12,<13'; }; \
	$(VENV12)/bin/python -m pytest -p no:cacheprovider tests/addons tests/e2e tests/analyzer/test_interaction.py

# Soak fuzzing, time-boxed: the property tests with many more examples (FUZZ_EXAMPLES per property), then
# the mutation fuzzer for FUZZ_SECONDS. Failing inputs land in tests/data/fuzz-regressions/ (commit them).
FUZZ_SECONDS ?= 300
FUZZ_EXAMPLES ?= 2000
FUZZ_JOBS ?= 1
fuzz: setup
	HYPOTHESIS_PROFILE=soak FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider \
	  --hypothesis-show-statistics tests/fuzz/test_properties.py
	$(BIN)/python tests/fuzz/mutate.py --seconds $(FUZZ_SECONDS) --jobs $(FUZZ_JOBS)

bench: setup
	$(BIN)/python benchmarks/proxy_overhead.py
	$(BIN)/python benchmarks/pcap_speed.py
	$(BIN)/python benchmarks/live_feed.py
	$(BIN)/python benchmarks/export_overhead.py

clean:
	rm -rf $(VENV) $(VENV12) logs .pytest_cache .ruff_cache .mypy_cache
