"""Shared fixtures: tiny local models are built once per session (no hub access)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests run on 2 shared cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + BPE tokenizer + chat template, built once per test session."""
    from openrft.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model")


@pytest.fixture
def tiny_model(tiny_model_dir: Path):
    """A fresh `(model, tokenizer)` pair per test (eval mode), so mutations never leak."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct from the catalog, in the default models directory
    ($OPENRFT_MODELS_DIR or ~/.cache/openrft/models): pulled once per machine (CI caches
    it), shared by every slow real-model test."""
    from openrft.models.catalog import ensure_model

    return ensure_model("smollm2-135m-instruct")
