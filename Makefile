# The two commands a fresh clone needs: `make up` runs the platform, `make test` runs the whole suite.
# Both create the virtual environment in .venv on first use.

VENV ?= .venv
# The first interpreter that really runs and is 3.11 or 3.12 (pyenv shims may exist but fail).
PYTHON ?= $(shell for candidate in python3.11 python3.12 python3; do \
	$$candidate -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' 2>/dev/null \
	&& { echo $$candidate; break; }; done)
BIN := $(VENV)/bin

.PHONY: up test demo install clean

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

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache
