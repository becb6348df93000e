# Two commands do all the setup: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN_DIR ?= runs/main

.PHONY: install run test test-fast benchmark-deps clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job: tune -> export -> report. Run again with the same RUN_DIR to resume.
PRESET ?= standard
run: $(STAMP)
	$(BIN)/mnist-opt run --preset $(PRESET) --run-dir $(RUN_DIR)

# The page's end-to-end test drives Debian's Chromium (no browser download).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

# The generated TFLite Micro sources are compiled by a test: Debian's g++ if the machine has none.
CXX_BIN := /usr/bin/g++
$(CXX_BIN):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq g++ >/dev/null

test: $(STAMP) $(CHROMIUM) $(CXX_BIN)
	$(BIN)/python -m pytest

# The edit loop: every test but those marked slow (they train or export models; see tests/conftest.py).
test-fast: $(STAMP) $(CHROMIUM) $(CXX_BIN)
	$(BIN)/python -m pytest -m "not slow"

# The benchmarks' own extra (Optuna, for benchmarks/hypervolume.py); `make test` does not need it.
BENCH_STAMP := $(VENV)/.benchmark-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[test,benchmark]'
	touch $(BENCH_STAMP)

benchmark-deps: $(BENCH_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
