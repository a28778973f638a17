# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install only when the project's declared dependencies change.
STAMP := $(VENV)/.installed

.PHONY: demo test soak bench lint typecheck check venv clean

venv: $(STAMP)

$(STAMP): setup.cfg setup.py pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "compute-endpoint needs Python >= 3.10; set PYTHON=/path/to/python3.x"; exit 1; }
	@echo "Installing compute-endpoint and its dependencies into $(VENV) (a minute or two, once) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -qq --disable-pip-version-check --upgrade pip setuptools wheel
	@# The build backend's notes about editable installs are for setuptools developers, not for you.
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install -qq --disable-pip-version-check -e '.[test,interop]'
	@touch $(STAMP)
	@echo "Installed."

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# Tests marked `exclusive` stop the shared RabbitMQ node or load the whole machine, so they run alone, after the rest.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadgroup -m "not exclusive" --durations=25
	$(BIN)/python -m pytest -p no:xdist -m exclusive

# An endpoint under steady load while its children are killed and RabbitMQ stops once
# (SOAK_MINUTES, default 5); it prints its figures and fails when a promise did not hold.
soak: $(STAMP)
	$(BIN)/python -m tests.soak

# The bench extra (matplotlib) draws the side-by-side chart.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install -qq --disable-pip-version-check -e '.[bench]'
	@touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check endpoint supervisor workers protocol broker service tests bench examples

# mypy reads the package as it is installed (compute_endpoint.*): a tree of links gives it that shape.
TYPECHECK_TREE := build/typecheck
typecheck: $(STAMP)
	@rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)/compute_endpoint
	@for folder in endpoint supervisor workers protocol broker service; do \
		ln -s "$(CURDIR)/$$folder" $(TYPECHECK_TREE)/compute_endpoint/$$folder; done
	cd $(TYPECHECK_TREE) && "$(CURDIR)/$(BIN)/python" -m mypy --config-file "$(CURDIR)/setup.cfg" -p compute_endpoint

# What CI runs before the tests: both must pass.
check: lint typecheck

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
