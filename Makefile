# Two commands for a newcomer: `make run` and `make test`. Both set up what
# they need first: a virtualenv in .venv with keycask and its tools.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEYCASK_LISTEN ?= 127.0.0.1:9567
export KEYCASK_DATA_DIR ?= ./.keycask

.PHONY: run test lint typecheck layers bench venv clean debian-venv softhsm opensc haproxy postgresql chromium interop

# `make run TLS=1`: HTTPS with the data dir's self-signed certificate
# (tls/cert.pem, the CA clients trust), as the Azure SDK requires.
run: $(STAMP)
	$(BIN)/keycask server --dev$(if $(filter 1,$(TLS)), --tls-self-signed)

test: $(STAMP) interop softhsm opensc haproxy postgresql chromium lint typecheck layers
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

venv: $(STAMP)

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

# Throughput and latency beside the bare-handler ceiling and moto_server.
# BENCH_ARGS=--quick for a one-run smoke test; see docs/performance.md.
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "keycask needs Python 3.11 or newer")'
	@$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || $(MAKE) --no-print-directory debian-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Clients the interoperability tests run as separate programs, each in a venv
# of its own because their pins cannot share keycask's: aws-encryption-cli
# needs the AWS Encryption SDK 3.x (keycask uses 4.x), and the Cryptographic
# Material Providers Library (the SDK's keyrings) holds cryptography below
# the release keycask is tested with.
INTEROP := $(VENV)/interop
INTEROP_STAMP := $(INTEROP)/.installed
interop: $(INTEROP_STAMP)
$(INTEROP_STAMP): $(STAMP) Makefile
	rm -rf $(INTEROP)/esdk-cli $(INTEROP)/mpl
	$(BIN)/python -m venv $(INTEROP)/esdk-cli
	$(INTEROP)/esdk-cli/bin/python -m pip install --quiet 'aws-encryption-sdk-cli>=4.3,<5'
	$(BIN)/python -m venv $(INTEROP)/mpl
	$(INTEROP)/mpl/bin/python -m pip install --quiet 'aws-encryption-sdk[MPL]>=4,<5' boto3
	@touch $(INTEROP_STAMP)

# Debian's python3 ships without ensurepip, which venv needs: python3-venv
# (or python3.X-venv for the exact version) brings it.
debian-venv:
	@command -v apt-get >/dev/null || { echo "python3 cannot create a venv; install your distribution's venv package"; exit 1; }
	apt-get update -qq
	apt-get install -y -qq python3-venv "python$$($(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv" \
	  || apt-get install -y -qq python3-venv

# The PKCS#11 seal's tests run against a real SoftHSM2 token.
SOFTHSM_MODULE := /usr/lib/softhsm/libsofthsm2.so
softhsm:
	@if [ -e $(SOFTHSM_MODULE) ] && command -v softhsm2-util >/dev/null; then :; else \
	  command -v apt-get >/dev/null || { echo "the tests need SoftHSM2 ($(SOFTHSM_MODULE) and softhsm2-util); install your distribution's softhsm2 package"; exit 1; }; \
	  apt-get update -qq && apt-get install -y -qq softhsm2; \
	fi

# pkcs11-tool (OpenSC) reads HSM-backed keys' attributes in the tests, as an operator would.
opensc:
	@if command -v pkcs11-tool >/dev/null; then :; else \
	  command -v apt-get >/dev/null || { echo "the tests need pkcs11-tool; install your distribution's opensc package"; exit 1; }; \
	  apt-get update -qq && apt-get install -y -qq opensc; \
	fi

# The load balancer test runs the HAProxy configuration from docs/deployment.md.
haproxy:
	@if command -v haproxy >/dev/null; then :; else \
	  command -v apt-get >/dev/null || { echo "the tests need HAProxy (haproxy on PATH); install your distribution's haproxy package"; exit 1; }; \
	  apt-get update -qq && apt-get install -y -qq haproxy; \
	fi

# The PostgreSQL tests use KEYCASK_TEST_PG_DSN when it is set (CI: the machine's
# server); otherwise the suite runs a private server of its own from these
# binaries (tests/pgserver.py), so they run everywhere and never skip.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; else \
	  command -v apt-get >/dev/null || { echo "the tests need the PostgreSQL server (initdb under /usr/lib/postgresql/<version>/bin); install your distribution's postgresql package"; exit 1; }; \
	  apt-get update -qq && apt-get install -y -qq postgresql; \
	fi

# The web console's browser tests (tests/e2e/test_console_browser.py) drive
# Debian's chromium through Playwright (a Python package of the dev extras);
# Playwright never downloads a browser of its own.
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then :; else \
	  command -v apt-get >/dev/null || { echo "the tests need Chromium at $(CHROMIUM); install your distribution's chromium package"; exit 1; }; \
	  apt-get update -qq && apt-get install -y -qq chromium; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
