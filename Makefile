# Two commands for a fresh machine: `make demo` and `make test`.
# Both create or refresh .venv; the install reruns only when pyproject.toml or
# constraints.txt change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_output
BENCH_OUT ?= bench_output
BENCH_THREADS ?= 2
# Test processes: each runs one torch thread, so two use both of CI's cores.
TEST_WORKERS ?= 2

.PHONY: venv test demo bench bench-quick docs lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

demo: $(STAMP)
	$(BIN)/deep-potential demo --output $(DEMO_OUT)

# Every benchmark prints one JSON object, kept in $(BENCH_OUT)/NAME.json.
# bench: the full sizes (about 20 minutes on 2 idle cores); bench-quick:
# reduced sizes (about 3 minutes). See docs/scaling.md.
bench: $(STAMP)
	mkdir -p $(BENCH_OUT)
	$(BIN)/python benchmarks/ensemble_scaling.py --threads $(BENCH_THREADS) > $(BENCH_OUT)/ensemble_scaling.json
	$(BIN)/python benchmarks/grad_cost.py --threads $(BENCH_THREADS) > $(BENCH_OUT)/grad_cost.json
	$(BIN)/python benchmarks/df_quality.py --threads $(BENCH_THREADS) > $(BENCH_OUT)/df_quality.json
	$(BIN)/python benchmarks/potential_quality.py --threads $(BENCH_THREADS) > $(BENCH_OUT)/potential_quality.json
	$(BIN)/python benchmarks/orbits.py --threads $(BENCH_THREADS) > $(BENCH_OUT)/orbits.json

bench-quick: $(STAMP)
	mkdir -p $(BENCH_OUT)
	$(BIN)/python benchmarks/ensemble_scaling.py --quick --threads $(BENCH_THREADS) > $(BENCH_OUT)/ensemble_scaling.json
	$(BIN)/python benchmarks/grad_cost.py --quick --threads $(BENCH_THREADS) > $(BENCH_OUT)/grad_cost.json
	$(BIN)/python benchmarks/df_quality.py --quick --threads $(BENCH_THREADS) > $(BENCH_OUT)/df_quality.json
	$(BIN)/python benchmarks/potential_quality.py --quick --sections exact --threads $(BENCH_THREADS) > $(BENCH_OUT)/potential_quality.json
	$(BIN)/python benchmarks/orbits.py --quick --threads $(BENCH_THREADS) > $(BENCH_OUT)/orbits.json

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) build *.egg-info docs/_build docs/generated $(DEMO_OUT) $(BENCH_OUT)
