# Everything runs inside .venv, created on first use from the pinned pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test sdk-tests bench install system plugins plugins-rust plugins-cpp clean

install: $(STAMP)

$(STAMP): pyproject.toml examples/plugins/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]' -e examples/plugins/acme_readers \
		-e examples/plugins/hsm_writer -e examples/plugins/cobol_reader \
		-e examples/plugins/cpp_fixedwidth
	touch $(STAMP)

# Native example plugins: built once, reused by every test (each target skips work when nothing changed).
plugins: plugins-rust plugins-cpp plugins-go

plugins-rust: install $(VENV)/.rust_postgres

# rust_postgres (sdk/rust + examples/plugins/rust_postgres) is rebuilt only when one of its sources changed.
# uv fetches the pinned maturin into an isolated build env; cargo keeps its incremental state in target/.
RUST_PG := examples/plugins/rust_postgres
RUST_PG_SOURCES := $(shell find sdk/rust/src $(RUST_PG)/src $(RUST_PG)/python -name '*.rs' -o -name '*.py' \
	-o -name '*.pyi' 2>/dev/null) sdk/rust/Cargo.toml $(RUST_PG)/Cargo.toml $(RUST_PG)/Cargo.lock \
	$(RUST_PG)/pyproject.toml
$(VENV)/.rust_postgres: $(RUST_PG_SOURCES) | $(STAMP)
	CARGO_TARGET_DIR=$(CURDIR)/$(RUST_PG)/target $(BIN)/uv pip install --quiet --python $(BIN)/python \
		--reinstall-package rust-postgres ./$(RUST_PG)
	touch $@

plugins-cpp: install
	$(MAKE) -C examples/plugins/cpp_fixedwidth

# Go example plugins (sdk/go + examples/plugins/go_*): each binary is rebuilt only when a Go source, go.mod or
# go.sum of it or of the SDK changed (Go's own build cache makes a rebuild quick); the two small Python
# packages that ship the binaries (entry points go_postgres, go_parquet) are installed editable.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GO_BUILD := $(GO) build -trimpath -buildvcs=false -ldflags='-s -w'
GO_SDK_SOURCES := $(filter-out %_test.go,$(wildcard sdk/go/*.go)) sdk/go/go.mod sdk/go/go.sum
GO_PG := examples/plugins/go_postgres
GO_PQ := examples/plugins/go_parquet_writer
GO_PG_BIN := $(GO_PG)/python/dativo_go_postgres/bin/go_postgres
GO_PQ_BIN := $(GO_PQ)/python/dativo_go_parquet/bin/go_parquet_writer
plugins-go: install $(GO_PG_BIN) $(GO_PQ_BIN) $(VENV)/.go_plugins
$(GO_PG_BIN): $(GO_SDK_SOURCES) $(filter-out %_test.go,$(wildcard $(GO_PG)/*.go)) $(GO_PG)/go.mod $(GO_PG)/go.sum
	cd $(GO_PG) && $(GO_BUILD) -o $(CURDIR)/$@ .
$(GO_PQ_BIN): $(GO_SDK_SOURCES) $(filter-out %_test.go,$(wildcard $(GO_PQ)/*.go)) $(GO_PQ)/go.mod $(GO_PQ)/go.sum
	cd $(GO_PQ) && $(GO_BUILD) -o $(CURDIR)/$@ .
$(VENV)/.go_plugins: $(GO_PG)/python/pyproject.toml $(GO_PQ)/python/pyproject.toml | $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e $(GO_PG)/python -e $(GO_PQ)/python
	touch $@

demo: install
	$(BIN)/python examples/demo.py

# Debian packages the tests need (a real PKCS#11 token, the sandbox, cmake for the projects `dativo plugin new`
# generates); installed once, with sudo when not root.
SYSTEM_PACKAGES := softhsm2 bubblewrap cmake
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

# The SDKs' own unit tests (the Python suite then runs every built plugin end to end).
sdk-tests:
	cd sdk/go && $(GO) test ./...
	cd $(GO_PG) && $(GO) test ./...
	cd $(GO_PQ) && $(GO) test ./...
	cd sdk/rust && cargo test --quiet

test: install system plugins sdk-tests
	$(BIN)/python -m pytest -q

# Benchmarks (never part of `make test`): ARGS="--quick", "--rows 5000000", "--scaling", "--write-docs" …
PEERS := bench/.venv-peers
bench: install plugins
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[bench]'
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(BIN)/uv pip install --quiet --python $(PEERS)/bin/python -r bench/peers/requirements.txt
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) .dativo out
