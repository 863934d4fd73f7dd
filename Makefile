# Two commands do all set-up: `make demo` and `make test` (system packages included:
# scripts/ensure_system_packages.sh installs bubblewrap, chromium and wordnet-base, or
# stops first with the one command to run when it cannot).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install system-packages test demo lint bench clean

system-packages:
	scripts/ensure_system_packages.sh

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned: on our machines this takes the local CPU wheel, never a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# dev tools, plus the Ray and PostgreSQL clients the scale-out tests use
	$(PY) -m pip install -q -e '.[dev,ray,postgres]'
	touch $(STAMP)

install: $(STAMP)

test: system-packages $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: system-packages $(STAMP)
	$(VENV)/bin/openrft demo --model smollm2-135m-instruct --out runs/demo

# vulture: dead code (src and tests, so a name only tests use counts as used); names
# frameworks reach by decorator or by name are ignored, the rest sit in vulture_whitelist.py.
VULTURE_IGNORE_DECORATORS := @router.*,@app.*,@*.command,@*.callback,@field_validator,@model_validator,@*.exception_handler,@event.listens_for,@pytest.fixture
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/vulture src tests vulture_whitelist.py --min-confidence 60 \
	  --ignore-decorators "$(VULTURE_IGNORE_DECORATORS)" \
	  --ignore-names "model_config,type_annotation_map,__getattr__"

# The side-by-side GRPO benchmark against TRL at BENCHMARKS.md's default config (m5,
# 8 prompts x 8 completions x 64 tokens, 6 steps, 2 interleaved repetitions): ~3 minutes.
BENCH_MODEL ?= runs/bench-models/m5
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	test -f $(BENCH_MODEL)/config.json || $(PY) benchmarks/make_model.py $(BENCH_MODEL)
	$(PY) benchmarks/grpo_vs_trl.py --model $(BENCH_MODEL)

clean:
	rm -rf $(VENV) runs .pytest_cache
