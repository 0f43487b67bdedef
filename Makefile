# starlette-ws: `make run` serves the demos, `make test` installs what the tests need and runs them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
BROADCAST_URL ?= memory://
MAX_MESSAGE_BYTES ?= 65536
GRACEFUL_TIMEOUT ?= 5
LOG_CONFIG ?= starlette_ws/logging.json
# Connections per process; empty: the open-files limit less FD_RESERVE kept for everything else.
LIMIT_CONCURRENCY ?=
FD_RESERVE ?= 100
# permessage-deflate: off by default. Browsers offer it and uvicorn would accept it; for short chat
# lines it saves little and costs memory per connection and CPU per broadcast (comparison/idle_bench.py).
WS_PER_MESSAGE_DEFLATE ?= false
PYTEST_ARGS ?=
# The package's extras each target installs into .venv, one stamp file per set (.venv/.installed-run
# ...): serving needs the engines only; the tests, the benchmarks and lint add theirs.
EXTRAS_run := redis,postgres
EXTRAS_test := test
EXTRAS_bench := compare
EXTRAS_compare := test,compare
EXTRAS_all := all
INSTALLED := $(VENV)/.installed
# `make test-oldest`: the lowest versions setup.cfg allows, in a venv of their own (uv resolves them),
# inside .venv so that nothing walking the checkout (the sdist test, git) meets it
OLDEST_VENV ?= $(VENV)/oldest
OLDEST := $(OLDEST_VENV)/bin
LINT_PATHS := starlette_ws harness tests comparison scripts

export BROADCAST_URL MAX_MESSAGE_BYTES

.PHONY: install system-deps run token test test-oldest lint format bench compare fuzz screenshots clean

$(INSTALLED)-%: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS_$*)]'
	touch $@

# Everything (every extra: the tests, the benchmarks, lint).
install: $(INSTALLED)-all

# Debian packages the tests start for real (redis-server, PostgreSQL, Chromium), when missing.
system-deps:
	bash scripts/system-deps.sh

# The Host names `make run` answers to (the DNS rebinding guard). HOST=0.0.0.0 stays in the list
# (the URL uvicorn prints); other machines' names for this one must be added: ALLOWED_HOSTS=...
run: export ALLOWED_HOSTS ?= $(HOST),localhost,127.0.0.1,[::1]
# uvicorn with our protocol classes (starlette_ws/protocol.py); the open-files limit is raised to
# its hard limit where allowed, and connections are capped below it (503 and a log line past it).
# With several workers each writes its metrics to files in one directory, emptied at each start
# (PROMETHEUS_MULTIPROC_DIR if set, else one per port under the temporary directory), and a scrape
# of /metrics answered by any worker sums them all (prometheus_client's multiprocess mode).
# A room token signed with ROOMS_TOKEN_SECRET, and the room page's URL with it:
# make token SUB=42 ROOMS='team-*' ROOM=team-a (ROOMS: a pattern the token may join and send in).
SUB ?= 1
ROOMS ?= *
ROOM ?= lobby
TTL ?= 3600
token: $(INSTALLED)-run
	@token=$$($(BIN)/python -m starlette_ws token --sub "$(SUB)" --rooms '$(ROOMS)' --ttl "$(TTL)") && \
		echo "$$token" && echo "http://$(HOST):$(PORT)/rooms/$(ROOM)?token=$$token"

run: $(INSTALLED)-run
	exec $(BIN)/starlette-ws --host $(HOST) --port $(PORT) --workers $(WORKERS) \
		$(if $(LIMIT_CONCURRENCY),--limit-concurrency $(LIMIT_CONCURRENCY)) --fd-reserve $(FD_RESERVE) \
		--log-config $(LOG_CONFIG) --timeout-graceful-shutdown $(GRACEFUL_TIMEOUT) \
		--ws-per-message-deflate $(WS_PER_MESSAGE_DEFLATE)

# One pytest worker per core, each taking whole test files (a module's servers and fixtures stay in
# one worker): most tests wait on sockets and timers, so two cores finish in about half the time.
XDIST ?= -n auto --dist loadfile
test: $(INSTALLED)-test system-deps
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The lower bounds in setup.cfg, checked: the unit suite, the TestClient tests and lint on the
# lowest version of every requirement (uv's lowest-direct resolution). The venv is made again when
# setup.cfg changes, so that a bound moved either way is what gets installed.
$(OLDEST_VENV)/.installed: setup.cfg pyproject.toml
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST)/python -m pip install --quiet uv
	$(OLDEST)/uv pip install --quiet --python $(OLDEST)/python --resolution lowest-direct -e '.[all]'
	touch $@

OLDEST_TESTS := tests/unit tests/test_spec_testclient.py tests/test_testclient_plain.py \
	tests/test_rooms_testclient.py tests/test_tokens_testclient.py tests/test_rooms_bounds.py \
	tests/test_fuzz_testclient.py tests/test_tokens_fuzz.py tests/backends/test_redis_backend.py \
	tests/backends/test_redis_history.py tests/cluster/test_engine.py tests/cluster/test_failover.py

test-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST)/python -m pytest -p no:cacheprovider $(XDIST) $(OLDEST_TESTS) $(PYTEST_ARGS)
	$(OLDEST)/ruff check --no-cache $(LINT_PATHS)
	$(OLDEST)/ruff format --no-cache --check $(LINT_PATHS)
	$(OLDEST)/mypy --strict --cache-dir $(OLDEST_VENV)/.mypy_cache $(LINT_PATHS)

# mypy reads every module the paths import, so lint runs where everything is installed.
lint: $(INSTALLED)-all
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy --strict $(LINT_PATHS)

format: $(INSTALLED)-all
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

# Benchmarks (figures and ratios against the FastAPI twin and a bare ASGI app; not tests). Each step
# writes its JSON to comparison/results/; comparison.measure notes the machine, the commit, the lines
# of code, the installed packages and the behaviour contract's rows the report needs besides.
bench: $(INSTALLED)-bench system-deps
	$(BIN)/python -m comparison.measure
	$(BIN)/python -m comparison.bench $(BENCH_ARGS)
	$(BIN)/python -m comparison.hub_bench $(HUB_BENCH_ARGS)
	$(BIN)/python -m comparison.rooms_bench $(ROOMS_BENCH_ARGS)
	$(BIN)/python -m comparison.token_bench $(TOKEN_BENCH_ARGS)
	$(BIN)/python -m comparison.cluster_bench $(CLUSTER_BENCH_ARGS)
	$(BIN)/python -m comparison.floor_bench $(FLOOR_BENCH_ARGS)
	$(BIN)/python -m comparison.idle_bench $(IDLE_BENCH_ARGS)
	$(BIN)/python -m comparison.startup_bench $(STARTUP_BENCH_ARGS)

# Comparison report: benchmarks, parity suite, then comparison/REPORT.md and its charts, rendered
# from comparison/results/ alone (tests/test_report.py checks REPORT.md is what those files give).
# The report is written even when parity fails; the target then exits with pytest's status.
compare: $(INSTALLED)-compare bench
	$(BIN)/python -m pytest tests/parity -q --junitxml=comparison/results/parity.xml; \
		status=$$?; $(BIN)/python -m comparison.report && exit $$status

FUZZ_EXAMPLES ?= 2000
fuzz: $(INSTALLED)-test
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/parity/test_differential.py tests/test_fuzz_testclient.py tests/test_tokens_fuzz.py

screenshots: $(INSTALLED)-test system-deps
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) $(OLDEST_VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
