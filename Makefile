# make demo | make test: each creates .venv/ and installs the pinned requirements when they are newer.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest options, e.g. make test PYTEST_ARGS="-k alexnet"
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo train figure3 test test-long lint format bench gpu-check clean clean-all

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	$(BIN)/python -m src.models.lrn_kernel || echo "tower LRN: C++ kernel not built; the slower eager LRN will be used"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned requirements

demo: $(STAMP)  ## train the two-tower net on the built-in synthetic dataset (CPU, a few minutes)
	$(BIN)/python src/train.py experiment=demo $(ARGS)

train: $(STAMP)  ## python src/train.py with ARGS, e.g. make train ARGS="model=four_tower trainer.max_epochs=3"
	$(BIN)/python src/train.py $(ARGS)

# The Figure 3 sweep (docs/figure3-experiment.md): towers x seeds, one run each; report: python -m src.reports.figure3_report
TOWERS ?= 1,2
SEEDS ?= 0,1,2
DATA ?= data=imagenette
figure3: $(STAMP)  ## the Figure 3 sweep, e.g. make figure3 DATA="data=folders data.root=DIR data.num_classes=10"
	$(BIN)/python src/train.py -m experiment=figure3 model.towers=$(TOWERS) seed=$(SEEDS) $(DATA) $(ARGS)

test: $(STAMP)  ## lint and format check, then the test suite in random order (about 14 minutes on a quiet 2-core machine) without the long runs
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/python -m pytest -m "not long" $(PYTEST_ARGS)

test-long: $(STAMP)  ## the 16 long end-to-end runs that make test leaves out (about 8 minutes; CI runs both)
	$(BIN)/python -m pytest -m long $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)  ## ruff format and fix
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:  ## remove outputs and caches (not data/, not the venv)
	rm -rf outputs multirun wandb lightning_logs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-all: clean  ## clean, and remove the venv too
	rm -rf $(VENV)

# make bench ARGS="--data DIR --cache-dir DIR" adds the real-epoch rows (DIR: a folder with train/<class>/)
bench: $(STAMP)  ## speed benchmarks: prints a table and writes docs/benchmarks.md (ARGS=--quick: a smoke test, printed only)
	$(BIN)/python -m bench.run --out docs/benchmarks.md $(ARGS)

gpu-check: $(STAMP)  ## on one GPU, under 8 minutes: its rows into docs/benchmarks.md (ARGS="--data DIR")
	$(BIN)/python -m bench.gpu_check --out docs/benchmarks.md $(ARGS)
