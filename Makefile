# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv and
# install the package (torch pinned to 2.13.0, the CPU wheel) the first time.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rampart demo --out reports/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

# The audit tests render HTML in headless Chromium and use a real PostgreSQL server, and the
# text tests read WordNet (wordnet-base); all come from Debian's packages and are installed
# when missing (never failing the build: the tests that need them then skip with a visible
# reason).
test: lint
	@.ci/ensure-chromium
	@.ci/ensure-postgres
	@.ci/ensure-wordnet
	$(PY) -m pytest -q

# Peers we compare against are optional extras, never runtime dependencies.
# torchattacks declares torchvision, which has no CPU build here (it would pull CUDA torch);
# its attacks import without it, so it goes in with --no-deps plus what it really needs.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,bench]" tqdm requests
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps torchattacks==3.5.1
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/attack_throughput.py

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache .hypothesis
