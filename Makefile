# Wattlab: `make run` (everything on this machine) and `make test` (what CI runs).
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The suite runs against real servers (CI: .ci/run starts them).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/wattlab
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
LINTED := core webapp experiments workers scripts bench tests examples manage.py

.PHONY: install run worker test lint pytest pytest-single-machine bench bench-web clean
.PHONY: test-compose

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Playwright drives Debian's /usr/bin/chromium: no browser download.
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) scripts/run.py

worker: $(STAMP)
	$(PY) scripts/worker.py

# Where PostgreSQL or Redis does not answer at the URLs above, scripts/with_servers.py
# starts throwaway ones on free ports for the two runs and stops them afterwards. The
# two runs go side by side (-j2; each one's output is printed when it ends), each
# spread over several processes (pytest-xdist): most of the suite's time is spent
# waiting on real workers, trainings and browsers, not on these 2 cores.
# The sub-make gets the URLs in use on its command line ({database_url}: filled in by
# with_servers.py): a TEST_DATABASE_URL given on make's command line reaches every
# sub-make and outranks the environment, so the throwaway server's URL must too.
test: $(STAMP) lint
	$(PY) scripts/with_servers.py --database-url $(TEST_DATABASE_URL) \
		--redis-url $(TEST_REDIS_URL) -- \
		$(MAKE) --no-print-directory -j2 --output-sync=target pytest pytest-single-machine \
		TEST_DATABASE_URL={database_url} TEST_REDIS_URL={redis_url}

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy core webapp experiments workers scripts
	$(VENV)/bin/lint-imports

# Processes per run (pytest-xdist; 0: none, one process as before). tests/conftest.py
# puts the long tests first and --dist load --maxschedchunk 1 hands tests out one at a
# time as processes free up, so the long ones run side by side from the start, not on
# one process at the end (worksteal and plain load give out consecutive chunks). Each
# run lists its 15 slowest tests: the suite must stay under 10 minutes here.
PYTEST_WORKERS ?= 4
SINGLE_MACHINE_WORKERS ?= 3
XDIST = $(if $(filter 0,$(1)),,-n $(1) --dist load --maxschedchunk 1)

# The whole suite on PostgreSQL + Redis. Exit status 5 (no tests collected) is not a
# failure of the code.
pytest: $(STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		$(VENV)/bin/pytest -q --durations=15 $(call XDIST,$(PYTEST_WORKERS)); rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

# Again with no server at all (SQLite and the filesystem broker, the single-machine
# default), but only what differs between the two (marker `backends`: the queue, the
# claim, database-specific queries, the end-to-end journeys; less those marked
# `one_backend`); the rest does not touch the database or broker in a way that depends
# on which one it is.
pytest-single-machine: $(STAMP)
	env -u DATABASE_URL -u REDIS_URL WATTLAB_VAR_DIR=$(CURDIR)/var/single-machine-tests \
		$(VENV)/bin/pytest -q --durations=15 -m 'backends and not one_backend' \
		$(call XDIST,$(SINGLE_MACHINE_WORKERS)); \
		rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

# docker-compose.yml for real (tests/compose): dockerd started if need be, stand-in images
# from Debian's packages built once per machine, Wattlab's image, up, the demo, cancel,
# stop, down; each step's time printed. Needs root (or sudo) and Docker; .ci/run runs it
# after make test.
test-compose: $(STAMP)
	$(VENV)/bin/pytest -q -s -p no:cacheprovider -m compose tests/compose

# Benchmarks run Django on this machine only: a throwaway key where none is set (the
# settings refuse to start without one).
bench bench-web: export DJANGO_SECRET_KEY ?= wattlab-benchmarks-only-not-a-secret

# Every benchmark that needs no generated history (results: docs/benchmarks.md).
# CodeCarbon, the overhead comparison, comes with the bench extra.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/bench_monitoring_overhead.py --seconds 60
	$(PY) bench/bench_trace_size.py
	$(PY) bench/bench_integration.py
	$(PY) bench/bench_coverage.py
	$(PY) bench/bench_stop_latency.py
	$(PY) bench/bench_submit_latency.py
	$(PY) bench/bench_legacy_import.py
	$(PY) bench/bench_hostile_yaml.py

# The team-scale page benchmark: 100,000 runs and 1,000,000 background runs in a
# PostgreSQL database of its own (dropped and made anew each time), then the pages
# under load on gunicorn, and a cold comparison of each workload.
BENCH_PG := postgres://postgres@127.0.0.1:5432
BENCH_DATABASE_URL := $(BENCH_PG)/wattlab_bench_history
bench-web: $(STAMP)
	psql "$(BENCH_PG)/postgres" -c "DROP DATABASE IF EXISTS wattlab_bench_history"
	psql "$(BENCH_PG)/postgres" -c "CREATE DATABASE wattlab_bench_history"
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) bench/generate_history.py --runs 100000 --background 1000000
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) bench/bench_pages.py --clients 1 --repeats 60 --seconds 30
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) bench/bench_compare.py --repeats 5

clean:
	rm -rf var/broker var/scratch var/single-machine-tests
