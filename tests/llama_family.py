"""Tiny random Llama-family models (one per architecture the lean decode covers) and a
left-padded prompt batch, shared by the decode and replay tests."""

from __future__ import annotations

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

SIZES = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=64)


def build_model(config_class, model_class, **overrides):
    """A seeded random model of `config_class` with SIZES, biases and norms varied."""
    torch.manual_seed(0)
    config = config_class(**{**SIZES, **overrides})
    config._attn_implementation = "sdpa"
    model = model_class(config).eval()
    with torch.no_grad():  # transformers initialises biases and norms to constants: vary them
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.3)
    return model


ARCHITECTURES = {
    "llama": lambda: build_model(LlamaConfig, LlamaForCausalLM),
    "llama_gqa_tied": lambda: build_model(LlamaConfig, LlamaForCausalLM,
                                          num_key_value_heads=2, tie_word_embeddings=True),
    "qwen2_qkv_bias": lambda: build_model(Qwen2Config, Qwen2ForCausalLM,
                                          num_key_value_heads=2),
    "qwen3_qk_norm": lambda: build_model(Qwen3Config, Qwen3ForCausalLM,
                                         num_key_value_heads=2, head_dim=16),
    "mistral_no_window": lambda: build_model(MistralConfig, MistralForCausalLM,
                                             sliding_window=None, num_key_value_heads=2),
}


def left_padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four left-padded prompts of lengths 7, 4, 7, 1 (pads are id 0)."""
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 97, (4, 7), generator=generator)
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[1, :3] = 0
    mask[3, :6] = 0
    return ids.masked_fill(mask == 0, 0), mask
