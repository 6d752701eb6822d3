# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit bench audit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/invites demo

lint: $(STAMP)
	$(BIN)/ruff check invites workers tests bench
	$(BIN)/ruff format --check invites workers tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Four test processes: most tests wait on real workers, SMTP and browsers, so they overlap well on 2 cores.
test: lint typecheck
	$(BIN)/pytest -n 4

# Known vulnerabilities in the dependencies (pip-audit); the policy is in .ci/audit.
audit: $(STAMP)
	.ci/audit

unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench.import
	$(BIN)/python -m bench.compose
	$(BIN)/python -m bench.deliver
	$(BIN)/python -m bench.rsvp_load

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
