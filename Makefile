# `make demo` and `make test` each create .venv when missing, install the pinned CPU torch first
# (so pip never resolves a multi-GB CUDA build), then genlab with its dev extras, then run.
# GPU users pick their torch build with one variable, e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
# One stamp per torch choice: `make demo TORCH=...` with another build reinstalls torch.
STAMP := $(VENV)/.genlab-installed-$(shell printf '%s' '$(TORCH)' | cksum | cut -d' ' -f1)

.PHONY: demo demo-vae test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.genlab-installed*
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo
	$(VENV)/bin/genlab train edm --data mnist5k --recipe recipes/edm-mnist.yaml --out runs/demo
	@echo "demo: see runs/demo/samples.png, runs/demo/metrics.json and runs/demo/report.html"

demo-vae: $(STAMP)
	rm -rf runs/demo-vae
	$(VENV)/bin/genlab train vae --data mnist5k --recipe recipes/vae-mnist.yaml --out runs/demo-vae

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15

# Removes the environment and caches; runs/ holds your training runs and is never touched.
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
