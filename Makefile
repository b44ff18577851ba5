# kiban: `make demo` runs the main job on the embedded default; `make test` runs lint and every test.
# Both create .venv and install what they need on a fresh machine with nothing but Python.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kiban-installed
# Debian documentation packages with real Japanese text; the tests need only the first.
TEST_DEBIAN_DOCS := manpages-ja
DEMO_DEBIAN_DOCS := manpages-ja debian-reference-ja maint-guide-ja

.PHONY: setup demo test lint format test-data clean

# llama-cpp-python (the `edge` extra) compiles llama.cpp: ~4 min on 2 cores, once (pip caches the
# wheel). A portable AVX2 build, and none of llama.cpp's tools, tests or examples.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

setup: $(STAMP)

# torch first and pinned: 2.13.0 is the CPU build this project's machines carry; an unpinned
# torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/pip install --quiet -e '.[train,serve,dev,ray,robot,edge]'
	touch $(STAMP)

test-data:
	bash scripts/install-debian-docs.sh $(TEST_DEBIAN_DOCS)

demo: setup
	bash scripts/demo.sh $(DEMO_DEBIAN_DOCS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

test: setup test-data lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
