# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit bench audit lock lock-upgrade lock-check wheel-check clean

# Every dependency comes from requirements.lock, pinned with its hashes (pip-tools' pip-compile makes it,
# .ci/lock says how): a lock that plain pip installs, so a machine with only Python and make needs no other
# tool. The project itself is then installed editable, without resolving anything.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/invites demo

lint: $(STAMP)
	$(BIN)/ruff check invites workers tests bench
	$(BIN)/ruff format --check invites workers tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

# Four test processes: most tests wait on real workers, SMTP and browsers, so they overlap well on 2 cores.
test: lint typecheck
	$(BIN)/pytest -n 4

# Known vulnerabilities in the dependencies (pip-audit); the policy is in .ci/audit.
audit: $(STAMP)
	.ci/audit

# requirements.lock after a change to pyproject.toml (keeps every pin that still fits); lock-upgrade moves
# every pin to the newest release; lock-check (CI) fails when the lock no longer matches pyproject.toml.
lock: $(STAMP)
	.ci/lock

lock-upgrade: $(STAMP)
	.ci/lock --upgrade

lock-check: $(STAMP)
	.ci/lock --check

# The wheel on its own (CI): built, installed with the locked dependencies in a fresh venv, and
# `invites demo --once` run from it in an empty directory.
wheel-check: $(STAMP)
	.ci/wheel-check

unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench.import
	$(BIN)/python -m bench.compose
	$(BIN)/python -m bench.deliver
	$(BIN)/python -m bench.rsvp_load

clean:
	rm -rf $(VENV) var dist build .pytest_cache .mypy_cache .ruff_cache
