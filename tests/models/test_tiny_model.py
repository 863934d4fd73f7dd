"""The tiny local model: deterministic build, loadable via Auto*, chat template, think tokens."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from openrft.models.tiny import build_tiny_model, default_tiny_model_dir


def _file_hashes(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def test_build_is_byte_identical_across_builds(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again")
    hashes = _file_hashes(tiny_model_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(hashes)
    assert hashes == _file_hashes(again)


def test_other_seed_gives_other_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    other = build_tiny_model(tmp_path / "seed1", seed=1)
    a = (tiny_model_dir / "model.safetensors").read_bytes()
    assert a != (other / "model.safetensors").read_bytes()


def test_loads_with_auto_classes_and_sizes_match(tiny_model) -> None:
    model, tokenizer = tiny_model
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert tokenizer.pad_token_id not in (None, tokenizer.eos_token_id)
    assert tokenizer.padding_side == "left"
    assert next(model.parameters()).dtype.is_floating_point


def test_chat_template_renders_all_roles(tiny_model) -> None:
    _, tokenizer = tiny_model
    messages = [
        {"role": "system", "content": "S"},
        {"role": "developer", "content": "D"},
        {"role": "user", "content": [{"type": "text", "text": "U"}]},
        {"role": "assistant", "content": "A"},
        {"role": "user", "content": "Q"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = (
        "<|bos|><|system|>S<|eos|><|developer|>D<|eos|><|user|>U<|eos|>"
        "<|assistant|>A<|eos|><|user|>Q<|eos|><|assistant|>"
    )
    assert text == expected
    ids = tokenizer.apply_chat_template(messages[-1:], add_generation_prompt=True)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")


def test_chat_template_rejects_unknown_role(tiny_model) -> None:
    _, tokenizer = tiny_model
    with pytest.raises(Exception, match="unsupported chat role: tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_think_markers_are_atomic_and_survive_decoding(tiny_model) -> None:
    _, tokenizer = tiny_model
    text = "<think>two plus two</think>The answer is 4."
    ids = tokenizer(text)["input_ids"]
    think_start, think_end = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    assert ids[0] == think_start and think_end in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    with_eos = ids + [tokenizer.eos_token_id, tokenizer.pad_token_id]
    assert tokenizer.decode(with_eos, skip_special_tokens=True) == text


def test_custom_corpus_changes_vocabulary(tmp_path: Path) -> None:
    corpus = ["hypertrophic cardiomyopathy"] * 50
    out = build_tiny_model(tmp_path / "domain", corpus=corpus, vocab_size=300)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    # a word seen 50 times is merged into few tokens; byte-level would need 12+ tokens
    assert len(tokenizer("cardiomyopathy")["input_ids"]) <= 3


def test_default_dir_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENRFT_HOME", str(tmp_path))
    first = default_tiny_model_dir()
    assert first.parent == tmp_path / "models" and (first / "config.json").exists()
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert default_tiny_model_dir() == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".tiny-")]
