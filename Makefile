# The two commands of the README. Each creates (or reuses) the virtual environment .venv.
#   make demo   run the bundled demo end to end on this CPU
#   make test   lint (ruff), format check (ruff format), type check (mypy), then the fast test tier
#               (`make test-slow` for the slow tier, `make lint` for the checks alone)
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch on this project's machines; elsewhere override, e.g. TORCH_SPEC="torch>=2.3".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-slow lint audit venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vocabadapt demo

# The CI gate (.ci/run): lint, format check, type check, then the fast test tier.
test: $(STAMP) lint
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check vocabadapt tests benchmarks
	$(VENV)/bin/ruff format --check vocabadapt tests benchmarks
	$(VENV)/bin/mypy

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -m slow

audit: $(STAMP)
	$(VENV)/bin/vocabadapt audit configs/research.yaml
