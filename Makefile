# Everything runs inside .venv, created on first use. PYTHON must be a Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# pytest workers: one per core of the 2-core CI machine (more cores: make test PYTEST_WORKERS=8)
PYTEST_WORKERS ?= 2

.PHONY: venv test test-all demo lint clean

$(BIN)/activate: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/activate

venv: $(BIN)/activate

# a test module stays on one worker, so its module fixtures are built once; the slowest tests
# are listed, to keep the whole under 8 minutes on 2 cores
test: venv
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope --durations=12

test-all: venv
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope --runslow

demo: venv
	$(BIN)/resunet demo

lint: venv
	$(BIN)/ruff check keras_resunet tests experiments export

clean:
	rm -rf $(VENV) demo_output .pytest_cache
