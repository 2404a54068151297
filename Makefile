# Every target creates .venv on first use. torch is pinned to the CPU wheel these machines carry;
# on a GPU box or Colab, `pip install -e .` keeps the torch that is already there.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

# The tiny world's models are too small to gain from intra-op threads, and OpenMP threads spinning against other
# processes on a 2-core machine slowed training 20x in a measurement here: one thread per process for tests/smoke.
TINY_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: setup test test-fast smoke smoke-real rehearse lab bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# Two pytest workers (pytest-xdist), one test file per worker at a time (--dist loadfile: a file's module fixtures
# are built once). Measured here: 806 tests in 8 min 46 s with two workers; 16.5-22 min in one process.
# TEST_WORKERS=0 runs them in this process (pdb, -x).
TEST_WORKERS ?= 2
PYTEST := $(TINY_ENV) $(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP)
	$(PYTEST) xfer_utils tests

test-fast: $(STAMP)
	$(PYTEST) -m "not slow" xfer_utils tests

smoke: $(STAMP)
	$(TINY_ENV) $(BIN)/xfer run params/plans/smoke.yaml --parallel 2

# Every shipped plan with its real structure on the tiny world (xfer rehearse --cover: every phase and grid value,
# dependencies, analyses; scale capped): a plan that passes here does not die hours into a GPU run. All plans are
# rehearsed even when one fails; the target fails at the end if any did. Outputs: outputs/rehearsal/<plan>/.
rehearse: $(STAMP)
	@rc=0; for p in params/plans/*.yaml; do \
	  $(TINY_ENV) $(BIN)/xfer rehearse $$p --cover --parallel 2 || rc=1; \
	done; exit $$rc

# The study on a tiny world built from real multilingual text (needs ../shared/data or SHARED_DATA=...).
SHARED_DATA ?= ../shared/data
smoke-real: $(STAMP)
	test -f .cache/real/world.json || $(TINY_ENV) $(BIN)/xfer tiny .cache/real --text-from $(SHARED_DATA)
	$(TINY_ENV) $(BIN)/xfer run params/plans/smoke_real.yaml --parallel 2

# An XLM-R-base-shaped model (XLM-R's real 250,002-id tokenizer, 12 layers, hidden 768, random weights) through every
# phase on CPU with capped steps; checks the load reports and the memory planner against the measured peak RSS
# (tests/realshape.py; writes .cache/realshape/realshape.json). Skips without ../shared/data/xlmr_tokenizer.
.PHONY: realshape
realshape: $(STAMP)
	$(BIN)/python tests/realshape.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py --json benchmarks/results/train_throughput.json
	$(BIN)/python benchmarks/retrieval.py --json benchmarks/results/retrieval.json

clean:
	rm -rf $(VENV) outputs/smoke outputs/rehearsal
