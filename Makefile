# qgate: `make run` starts the whole stack, `make test` runs every test. Both install what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
export PORT

.PHONY: install run test unit bench chaos clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	@scripts/run

test: install
	@scripts/ensure-redis --binary
	@scripts/ensure-chromium
	@scripts/ensure-promtool
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

bench: install
	@scripts/ensure-redis --binary
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.ratelimit $(BENCH_RATELIMIT_ARGS)
	$(BIN)/python -m bench.tracing $(BENCH_TRACING_ARGS)
	$(BIN)/python -m bench.audit $(BENCH_AUDIT_ARGS)
	$(BIN)/python -m bench.solvers $(BENCH_SOLVERS_ARGS)
	$(BIN)/python -m bench.milp $(BENCH_MILP_ARGS)
	$(BIN)/python -m bench.brownout $(BENCH_BROWNOUT_ARGS)
	$(BIN)/python -m bench.qpu_depth --max-reps 8 $(BENCH_QPU_DEPTH_ARGS)

# Chaos drills under a steady load (Redis restarted, paused, kill -9; a lane worker, the audit writer and
# the watchdog hurt): prints per drill accepted, ended, stuck, duplicated, audit events missing.
chaos: install
	@scripts/ensure-redis --binary
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
