# The two commands a fresh clone needs: `make up` runs the platform, `make test` runs the whole suite.
# Both create the virtual environment in .venv on first use.

VENV ?= .venv
# The first interpreter that really runs and is 3.11 or 3.12 (pyenv shims may exist but fail).
PYTHON ?= $(shell for candidate in python3.11 python3.12 python3; do \
	$$candidate -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' 2>/dev/null \
	&& { echo $$candidate; break; }; done)
BIN := $(VENV)/bin

.PHONY: up test demo bench install chromium clean

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "nurture needs Python 3.11 or 3.12 (durable-rules does not import on 3.13); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/.installed

up: install
	$(BIN)/nurture up

demo: install
	$(BIN)/nurture demo

# Measures the platform on PostgreSQL and Redis at 127.0.0.1 and writes docs/benchmarks.md; pass
# options through BENCH_ARGS, e.g. make bench BENCH_ARGS="--backend embedded --scale small".
bench: install
	$(BIN)/python -m bench run $(BENCH_ARGS)

test: install chromium
	$(BIN)/pytest $(PYTEST_ARGS)

# The dashboard tests drive Debian's Chromium (never a downloaded browser). As root, install it when it
# is missing; elsewhere say how, and let those tests fail with the same advice.
CHROMIUM ?= $(or $(NURTURE_TEST_CHROMIUM),/usr/bin/chromium)

chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the dashboard tests"; \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
		|| echo "installing chromium failed; the dashboard tests will fail"; \
	else \
		echo "$(CHROMIUM) is missing and only root can install it here; the dashboard tests will fail" \
		"until you run: sudo apt-get update && sudo apt-get install -y chromium"; \
	fi

clean:
	rm -rf $(VENV) data .pytest_cache
