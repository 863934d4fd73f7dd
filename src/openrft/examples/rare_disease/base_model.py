"""The untuned base model: a tiny Llama with a domain tokenizer, pretrained on the textbook.

Tokenizer choice: `openrft.models.tiny.build_tiny_model` trains a byte-level BPE on the
textbook; we then add every gene symbol, disease name and HPO term name of the subset as
one whole-word token (`single_word=True`, so "AR" never matches inside "ARX"). A tiny
model then reads "Short stature" or "COL2A1" as one symbol instead of 3-6 sub-words,
which makes associations learnable in minutes on a CPU and keeps sequences short.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrft.examples.rare_disease.corpus import Textbook

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseModelSettings:
    """Architecture and pretraining budget of the base model (demo-scale defaults)."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 384
    bpe_vocab: int = 1000  # BPE merges for the glue text; domain tokens come on top
    max_positions: int = 128  # prompt (~30 tokens) + answer (<= 64) fit
    epochs: int = 20
    learning_rate: float = 3e-3
    batch_size: int = 16


def domain_tokens(names: list[str]) -> list[str]:
    """Distinct non-empty names, longest first (deterministic order for the vocabulary)."""
    return sorted({n for n in names if n.strip()}, key=lambda n: (-len(n), n))


def build_untrained_model(
    out_dir: Path, textbook: Textbook, tokens: list[str], settings: BaseModelSettings, seed: int
) -> Path:
    """A random-init tiny Llama whose tokenizer knows the domain names as whole tokens."""
    import torch
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from openrft.models.tiny import build_tiny_model

    build_tiny_model(
        out_dir,
        hidden=settings.hidden,
        layers=settings.layers,
        heads=settings.heads,
        intermediate=settings.intermediate,
        vocab_size=settings.bpe_vocab,
        max_positions=settings.max_positions,
        seed=seed,
        corpus=textbook.passages + [m["content"] for d in textbook.dialogs for m in d],
    )
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    tokenizer.add_tokens(
        [AddedToken(t, single_word=True, normalized=False, special=False) for t in tokens]
    )
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    # The new rows (every domain token) are drawn from torch's global RNG: seed it here, or
    # the same seed gives a different base in every process.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def textbook_rows(textbook: Textbook, seed: int) -> list[dict[str, Any]]:
    """Pretraining rows: prose as LM text (loss on every token), case reports as chat rows
    (loss on the answer only, so no compute goes into predicting the patient's findings)."""
    rows: list[dict[str, Any]] = [{"text": t} for t in textbook.passages]
    rows += [{"messages": dialog} for dialog in textbook.dialogs]
    random.Random(seed).shuffle(rows)
    return rows
