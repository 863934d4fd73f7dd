"""The untrained base is a pure function of its seed (domain-token rows included)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from openrft.examples.rare_disease.base_model import BaseModelSettings, build_untrained_model
from openrft.examples.rare_disease.corpus import Textbook

TEXTBOOK = Textbook(
    passages=["Alpha syndrome is caused by mutations in GENEA.", "GENEB is the gene of Beta."] * 5,
    dialogs=[],
)
TOKENS = ["Alpha syndrome", "Beta", "GENEA", "GENEB", "Short stature"]
SMALL = BaseModelSettings(hidden=16, layers=1, heads=2, intermediate=32, bpe_vocab=300)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_same_seed_same_init_even_after_the_global_rng_moved(tmp_path: Path) -> None:
    first = build_untrained_model(tmp_path / "a", TEXTBOOK, TOKENS, SMALL, seed=3)
    torch.rand(1000)  # another caller used the global RNG in between
    second = build_untrained_model(tmp_path / "b", TEXTBOOK, TOKENS, SMALL, seed=3)
    other = build_untrained_model(tmp_path / "c", TEXTBOOK, TOKENS, SMALL, seed=4)
    a, b, c = _weights(first), _weights(second), _weights(other)
    embeddings = "model.embed_tokens.weight"
    assert a[embeddings].shape[0] >= len(TOKENS)  # the domain tokens were added
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a[embeddings][-len(TOKENS):], c[embeddings][-len(TOKENS):])
