# Two commands on a fresh machine: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BENCH_VENV := .venv-bench
PORT ?= 8003
# Farm workers make run starts (one pool process each; shards are shared among them).
WORKERS ?= 2

.PHONY: run test bench lint format venv services db static demo-env clean-run audit

# uv installs the pinned requirements in seconds where pip takes minutes (make run's 90 s budget).
# --compile-bytecode: uvicorn's worker processes import with -B (they never write .pyc files), so
# without it every one of them compiled pandas, scipy and Django from source at each start.
$(VENV)/.installed: requirements/base.txt requirements/dev.txt requirements/bootstrap.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/bootstrap.txt
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements/dev.txt
	@touch $@

venv: $(VENV)/.installed

# The live page's charting library (uPlot, pinned in streaming/web/package-lock.json): npm ci puts
# it in node_modules and collectstatic serves it as a static file; nothing is built.
WEB_ASSETS := streaming/web/node_modules/.installed
$(WEB_ASSETS): streaming/web/package.json streaming/web/package-lock.json
	npm ci --prefix streaming/web --no-audit --no-fund --silent
	@touch $@

static: venv $(WEB_ASSETS)
	$(PY) manage.py collectstatic --noinput -v 0

services:
	@scripts/ensure-services.sh

db: venv services
	@scripts/ensure-database.sh
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py ensure_partitions

# The whole local topology with a simulated market, in the foreground; Ctrl-C stops all of it.
run: db static
	@scripts/install-system-deps.sh
	@mkdir -p .run
	@echo "Signal Service on http://localhost:$(PORT)  (API docs /api/v2/docs/, admin /admin/, Flower :$${FLOWER_PORT:-5555})"
	MARKET_CALENDAR=NSE-DEMO API_ANONYMOUS_READ=true WEB_PORT=$(PORT) $(VENV)/bin/honcho -f Procfile start -c worker=$(WORKERS)

test: venv services static
	@scripts/install-system-deps.sh
	@scripts/ensure-database.sh
	$(VENV)/bin/pytest -n 2 --dist loadgroup --create-db $(PYTEST_ARGS)

$(BENCH_VENV)/.installed: requirements/base.txt requirements/dev.txt requirements/bench.txt requirements/bootstrap.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/bootstrap.txt
	$(BENCH_VENV)/bin/uv pip install --quiet --python $(BENCH_VENV)/bin/python -r requirements/dev.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/bench.txt
	# vollib's lets_be_rational overwrites files of the py_lets_be_rational that py_vollib_vectorized
	# compiles with numba: reinstall them in this order, built fresh (pins cannot express this).
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir --force-reinstall --no-deps py_lets_be_rational==1.0.1
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir --force-reinstall --no-deps lets_be_rational==1.1.2
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir --force-reinstall --no-deps py_lets_be_rational==1.0.1
	@touch $@

bench: $(BENCH_VENV)/.installed services
	@scripts/install-system-deps.sh
	@scripts/ensure-database.sh
	$(BENCH_VENV)/bin/python -m benchmarks.run $(BENCH)

# Known vulnerabilities in the pinned requirements (base + dev), docs/reliability.md "Security".
# pip-audit asks PyPI's JSON API about each pinned version (/pypi/NAME/VERSION/json); where that
# cannot be reached it would skip every package and still print "No known vulnerabilities found", so
# it is probed first, and --strict fails on any package that could not be asked about.
# AUDIT_IGNORE: vulnerability ids explained in docs/reliability.md (space separated).
AUDIT_IGNORE ?=
audit: venv
	@$(PY) -c "import urllib.request; urllib.request.urlopen('https://pypi.org/pypi/pip/24.0/json', timeout=15)" 2>/dev/null \
		|| { echo "audit: PyPI's JSON API (pip-audit's vulnerability database) is not reachable from this machine" >&2; exit 2; }
	$(VENV)/bin/pip-audit --strict --progress-spinner off -r requirements/dev.txt $(foreach id,$(AUDIT_IGNORE),--ignore-vuln $(id))

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
