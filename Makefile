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
INSTALLED := $(VENV)/.installed

export BROADCAST_URL MAX_MESSAGE_BYTES

.PHONY: install system-deps run token test lint format bench compare fuzz screenshots clean

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $@

install: $(INSTALLED)

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
token: install
	@token=$$($(BIN)/python -m starlette_ws token --sub "$(SUB)" --rooms '$(ROOMS)' --ttl "$(TTL)") && \
		echo "$$token" && echo "http://$(HOST):$(PORT)/rooms/$(ROOM)?token=$$token"

run: install
	exec $(BIN)/starlette-ws --host $(HOST) --port $(PORT) --workers $(WORKERS) \
		$(if $(LIMIT_CONCURRENCY),--limit-concurrency $(LIMIT_CONCURRENCY)) --fd-reserve $(FD_RESERVE) \
		--log-config $(LOG_CONFIG) --timeout-graceful-shutdown $(GRACEFUL_TIMEOUT) \
		--ws-per-message-deflate $(WS_PER_MESSAGE_DEFLATE)

test: install system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check starlette_ws harness tests comparison scripts
	$(BIN)/ruff format --check starlette_ws harness tests comparison scripts
	$(BIN)/mypy --strict starlette_ws harness tests comparison scripts

format: install
	$(BIN)/ruff format starlette_ws harness tests comparison scripts
	$(BIN)/ruff check --fix starlette_ws harness tests comparison scripts

# Benchmarks (figures and ratios against the FastAPI twin and a bare ASGI app; not tests). Each step
# writes its JSON to comparison/results/; comparison.measure notes the machine, the commit, the lines
# of code, the installed packages and the behaviour contract's rows the report needs besides.
bench: install system-deps
	$(BIN)/python -m comparison.measure
	$(BIN)/python -m comparison.bench $(BENCH_ARGS)
	$(BIN)/python -m comparison.hub_bench $(HUB_BENCH_ARGS)
	$(BIN)/python -m comparison.rooms_bench $(ROOMS_BENCH_ARGS)
	$(BIN)/python -m comparison.token_bench $(TOKEN_BENCH_ARGS)
	$(BIN)/python -m comparison.idle_bench $(IDLE_BENCH_ARGS)
	$(BIN)/python -m comparison.startup_bench $(STARTUP_BENCH_ARGS)

# Comparison report: benchmarks, parity suite, then comparison/REPORT.md and its charts, rendered
# from comparison/results/ alone (tests/test_report.py checks REPORT.md is what those files give).
# The report is written even when parity fails; the target then exits with pytest's status.
compare: bench
	$(BIN)/python -m pytest tests/parity -q --junitxml=comparison/results/parity.xml; \
		status=$$?; $(BIN)/python -m comparison.report && exit $$status

FUZZ_EXAMPLES ?= 2000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/parity/test_differential.py tests/test_fuzz_testclient.py tests/test_tokens_fuzz.py

screenshots: install system-deps
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
