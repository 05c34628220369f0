# The two commands of the README:
#   make demo   set up, then train ResNet-20 on the built-in synthetic data (offline)
#   make test   set up (Horovod included), then run the test suite
# Everything is installed into $(VENV) by the targets themselves.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# One data file for every process of the suite, whatever folder it runs in.
COVERAGE := COVERAGE_FILE=$(CURDIR)/.coverage $(PY) -m coverage
# The real CIFAR-10 subset used by tests and benchmarks (override to point elsewhere).
TTABENCH_DATA_DIR ?= $(abspath ../shared/data/cifar10-subset/cifar-10-batches-py)
export TTABENCH_DATA_DIR

# pytest-xdist workers for the suite: one more than the cores. The worker that runs the system
# tests (Slurm, shaped links: SYSTEM_MODULES in tests/conftest.py, one after another) spends about
# two thirds of its time waiting on a scheduler or a link (measured on 2 cores: 134 CPU-s in 505 s);
# the extra worker keeps the cores busy meanwhile.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

.PHONY: install site-bytecode bytecode horovod tools lint demo test test-fast coverage bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --no-compile -c constraints.txt -e '.[test]'
	$(MAKE) --no-print-directory site-bytecode
	touch $@

# What pip installed, compiled to bytecode on every core (pip compiles one file after another:
# two thirds of a fresh install's minute and a half). Files some packages ship that do not compile
# under this Python (templates, other versions' code) are skipped, as pip skips them.
site-bytecode:
	$(PY) -m compileall -qq -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true

# The package's own modules compiled to bytecode once, as pip does for what it installs: where
# PYTHONDONTWRITEBYTECODE is set (as on the CI machine), every process would otherwise compile
# them again on import, ~0.3 CPU-s for each of the suite's many short CLI and worker processes.
# Files compiled before are skipped; a stale one is only ignored (Python checks the timestamps).
bytecode: install
	$(PY) -m compileall -q -j 0 *.py launch reference_impls divisions benchmarks examples tests

horovod: install
	scripts/install_horovod.sh $(PY)

# 3 epochs of the synthetic set, evaluated every quarter epoch, with the synthetic set's default
# thresholds (reference_impls/recipe.py THRESHOLDS).
demo: install bytecode
	$(VENV)/bin/ttabench run --synthetic --seed 1 --max-epochs 3 --eval-every 0.25epoch \
		--results-dir demo-results

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The system tools the suite uses (ip, tc, mount, unshare, git), installed with apt-get when
# missing and root; otherwise it says what is missing (the tests that need them skip, or fail in CI).
tools:
	scripts/install_test_tools.sh

# Lint and format check first (seconds), then the suite. A suite that collects nothing fails
# (pytest's exit 5 is passed on); the skip summary (-ra, setup.cfg) and the 15 slowest tests
# are printed at the end.
test: install bytecode horovod tools lint
	$(PY) -m pytest tests -n $(TEST_WORKERS) --durations=15

# The suite under coverage.py, in every process the tests start (setup.cfg's [coverage:run]),
# on the same xdist workers as `make test` (subprocesses, followed like the rest), then the
# package's statement coverage; `$(PY) -m coverage report` afterwards for the table.
# A target of its own: following every process costs a fifth to a third more CPU time on the
# tests that start many short ones (65 CLI tests, twice each: 62 and 68 instead of 52 and 52 CPU
# seconds, measured at a load of 6-12 on 2 cores), too much to add to `make test`.
coverage: install bytecode horovod tools
	$(COVERAGE) erase
	$(COVERAGE) run -m pytest tests -n $(TEST_WORKERS); status=$$?; \
		$(COVERAGE) combine -q && $(COVERAGE) report | tail -n 1 \
		| awk '{print "statement coverage of the package: " $$NF " (" $$2 " statements, " $$3 " not run)"}'; \
		exit $$status

test-fast: install bytecode lint
	$(PY) -m pytest tests -n $(TEST_WORKERS) -m "not slow" --durations=15

# Side-by-side training throughput (baseline vs ttabench's modes), ~10 minutes on 2 cores.
bench: install
	$(PY) -m benchmarks.throughput

clean:
	rm -rf build dist *.egg-info demo-results .pytest_cache .coverage .coverage.*
