# The two commands a newcomer needs: `make demo` (the embedded stack with the
# synthetic demo) and `make test` (the whole suite). Both bootstrap first.
VENV ?= .venv
BIN := $(VENV)/bin
export KERAS_HOME ?= $(CURDIR)/.keras
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: bootstrap demo up test test-fast lint protos bench bench-al bench-system

bootstrap:
	./scripts/bootstrap.sh

demo: bootstrap
	$(BIN)/lumenal up --demo

up: bootstrap
	$(BIN)/lumenal up

test: bootstrap
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -ra --durations=15

test-fast: bootstrap
	$(BIN)/python -m pytest -q tests/unit

lint: bootstrap
	$(BIN)/ruff check .

protos: bootstrap
	$(BIN)/python proto/generate.py

bench: bench-al bench-system

bench-al: bootstrap
	$(BIN)/lumenal bench al --json bench-al.json --plot docs/img/learning-curves.png

bench-system: bootstrap
	$(BIN)/lumenal bench system --json bench-system.json
