# Two commands on a fresh machine with python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

$(BIN)/tk: pyproject.toml contrib/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]" -e contrib/torchtk-torchmetrics
	touch $(BIN)/tk

install: $(BIN)/tk

demo: install  ## install, then train the bundled rings example
	$(BIN)/tk train rings

test: install  ## the whole test suite
	$(BIN)/python -m pytest -q

bench: install  ## performance targets, as ratios against references measured in the same run
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/checkpoint_memory.py

clean:
	rm -rf $(VENV) runs *.egg-info
