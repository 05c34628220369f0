# The two commands of the README:
#   make demo   set up, then train ResNet-20 on the built-in synthetic data (offline)
#   make test   set up (Horovod included), then run the test suite
# Everything is installed into $(VENV) by the targets themselves.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The real CIFAR-10 subset used by tests and benchmarks (override to point elsewhere).
TTABENCH_DATA_DIR ?= $(abspath ../shared/data/cifar10-subset/cifar-10-batches-py)
export TTABENCH_DATA_DIR

.PHONY: install horovod lint demo test test-fast bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $@

horovod: install
	scripts/install_horovod.sh $(PY)

# 3 epochs of the synthetic set, evaluated every quarter epoch, with the synthetic set's default
# thresholds (reference_impls/recipe.py THRESHOLDS).
demo: install
	$(VENV)/bin/ttabench run --synthetic --seed 1 --max-epochs 3 --eval-every 0.25epoch \
		--results-dir demo-results

# Lint and format check first (seconds), then the suite. pytest exits 5 when it
# collects nothing; that is not a failure of the suite.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install horovod lint
	$(PY) -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

test-fast: install lint
	$(PY) -m pytest tests -m "not slow"; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# Side-by-side training throughput (baseline vs ttabench's modes), ~10 minutes on 2 cores.
bench: install
	$(PY) -m benchmarks.throughput

clean:
	rm -rf build dist *.egg-info demo-results .pytest_cache
