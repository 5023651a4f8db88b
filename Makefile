# Everything runs inside .venv, created on first use from the pinned pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install plugins plugins-rust plugins-cpp clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]' -e examples/plugins/acme_readers
	touch $(STAMP)

# Native example plugins: built once, reused by every test (each target skips work when nothing changed).
plugins: plugins-rust plugins-cpp

plugins-rust: install

plugins-cpp: install

demo: install
	$(BIN)/python examples/demo.py

test: install plugins
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .dativo out
