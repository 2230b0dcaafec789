# Two commands on a fresh clone: `make demo` and `make test`. Each creates .venv if it is missing and
# installs torch==2.13.0 (a CPU build) BEFORE the project, so pip never pulls a multi-GB CUDA torch.
# The tests need the optional Flower extra (secfl[flower]: flwr + ray); `import secfl` never does.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.secfl-installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,flower]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/secfl demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
