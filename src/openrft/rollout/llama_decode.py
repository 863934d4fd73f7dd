"""A lean forward for decoding Llama-family models (Llama, Mistral without a sliding
window, Qwen2, Qwen3), used by `BatchDecoder` in place of the transformers module.

Why: GRPO spends its rollout time in ~T small forwards of one token per row. Through the
transformers modules each one pays for mask building, cache bookkeeping and ~7 separate
linear layers per block (plus 2 more matmuls per LoRA-adapted layer). Here the weights
are gathered once per rollout into fused matrices (q|k|v and gate|up, LoRA deltas merged
in, as eval-mode LoRA computes W + scale * B @ A anyway), the KV cache is a
pre-allocated buffer written in place, and a block is ~15 tensor ops. The arithmetic is
the model's own: its rotary embedding module, its RMSNorm epsilon, its attention scale.

Anything this module does not reproduce exactly (other architectures, sliding windows,
biased MLPs, DoRA, adapted embeddings, attention dropout) makes `fast_decode_for` return
None and the decoder falls back to the transformers forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

SUPPORTED_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


@dataclass
class _Block:
    """One decoder layer's weights, fused for decoding."""

    input_norm: torch.Tensor
    qkv: torch.Tensor  # (heads + 2 * kv_heads) * head_dim rows
    qkv_bias: torch.Tensor | None
    q_norm: torch.Tensor | None  # Qwen3 normalises q and k per head
    k_norm: torch.Tensor | None
    out: torch.Tensor
    post_norm: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


class LlamaDecodeForward:
    """prefill(...) then step(...) repeatedly; both return last-position logits (R, V)."""

    @torch.no_grad()  # a snapshot of the weights for this rollout, outside any graph
    def __init__(self, model: Any) -> None:
        base = _unwrap(model)
        config, inner = base.config, base.model
        self.eps = config.rms_norm_eps
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scale = inner.layers[0].self_attn.scaling
        self.rotary = inner.rotary_emb
        self.embed = inner.embed_tokens.weight
        self.final_norm = inner.norm.weight
        matmul_dtype = _autocast_dtype(self.embed.device)
        self.lm_head = _cast(effective_weight(base.lm_head), matmul_dtype)
        self.lm_head_bias = _bias(base.lm_head)
        self.blocks = [_gather_block(layer, matmul_dtype) for layer in inner.layers]
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0
        self.pad_bias: torch.Tensor | None = None  # (R, 1, 1, capacity) -inf at padding

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor, extra: int) -> torch.Tensor:
        """Run the (R, P) left-padded prompts, keep room for `extra` more positions."""
        rows, length = input_ids.shape
        capacity = length + extra
        key_valid = attention_mask.bool()
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
        # every query may see itself, so all-padding rows stay finite (their output is unused)
        own = torch.eye(length, dtype=torch.bool, device=input_ids.device)
        mask = causal & (key_valid[:, None, None, :] | own)
        self.pad_bias = None  # no padding: decode steps need no mask at all
        if not bool(key_valid.all()):
            self.pad_bias = torch.zeros(rows, 1, 1, capacity, device=input_ids.device)
            self.pad_bias[:, 0, 0, :length].masked_fill_(~key_valid, float("-inf"))
        self.keys, self.values, self.length = [], [], 0
        hidden = self._run(input_ids, positions, mask, capacity)
        return self._logits(hidden[:, -1])

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One token per row: tokens (R,), positions (R,) -> logits (R, V)."""
        mask = None
        if self.pad_bias is not None:
            mask = self.pad_bias[..., : self.length + 1]
        hidden = self._run(tokens[:, None], positions[:, None], mask, 0)
        return self._logits(hidden[:, -1])

    def _run(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
             capacity: int) -> torch.Tensor:
        rows, length = ids.shape
        x = F.embedding(ids, self.embed)
        cos, sin = self.rotary(x, positions)
        start, end = self.length, self.length + length
        for index, block in enumerate(self.blocks):
            h = F.rms_norm(x, x.shape[-1:], block.input_norm, self.eps)
            qkv = F.linear(h, block.qkv, block.qkv_bias).view(rows, length, -1, self.head_dim)
            q, k, v = qkv.split([self.heads, self.kv_heads, self.kv_heads], dim=2)
            if block.q_norm is not None and block.k_norm is not None:
                q = F.rms_norm(q, q.shape[-1:], block.q_norm, self.eps)
                k = F.rms_norm(k, k.shape[-1:], block.k_norm, self.eps)
            q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
            v = v.transpose(1, 2)
            if capacity:  # prefill: allocate this layer's cache
                self.keys.append(k.new_empty(rows, self.kv_heads, capacity, self.head_dim))
                self.values.append(v.new_empty(rows, self.kv_heads, capacity, self.head_dim))
            self.keys[index][:, :, start:end] = k
            self.values[index][:, :, start:end] = v
            attn_mask = mask if mask is None or mask.dtype == torch.bool else mask.to(q.dtype)
            attn = F.scaled_dot_product_attention(
                q, self.keys[index][:, :, :end], self.values[index][:, :, :end],
                attn_mask=attn_mask, scale=self.scale, enable_gqa=self.kv_heads != self.heads,
            )
            x = x + F.linear(attn.transpose(1, 2).reshape(rows, length, -1), block.out)
            h = F.rms_norm(x, x.shape[-1:], block.post_norm, self.eps)
            gate, up = F.linear(h, block.gate_up).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, block.down)
        self.length = end
        return x

    def _logits(self, last_hidden: torch.Tensor) -> torch.Tensor:
        h = F.rms_norm(last_hidden, last_hidden.shape[-1:], self.final_norm, self.eps)
        return F.linear(h, self.lm_head, self.lm_head_bias)


def fast_decode_for(model: Any) -> LlamaDecodeForward | None:
    """The lean forward when `model` is one it reproduces exactly, else None."""
    base = _unwrap(model)
    config = getattr(base, "config", None)
    if config is None or getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return None
    if getattr(config, "hidden_act", None) != "silu" or getattr(config, "mlp_bias", False):
        return None
    if getattr(config, "attention_dropout", 0.0) and base.training:
        return None
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return None
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    if any(kind != "full_attention" for kind in layer_types):
        return None
    inner = getattr(base, "model", None)
    if inner is None or not hasattr(inner, "rotary_emb") or not hasattr(base, "lm_head"):
        return None
    if _is_adapted(inner.embed_tokens):
        return None
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj,
                   mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        if not all(_plain_or_lora(m) for m in [*linears, base.lm_head]):
            return None
        if any(_bias(m) is not None for m in [attn.o_proj, mlp.gate_proj, mlp.up_proj,
                                               mlp.down_proj]):
            return None
    return LlamaDecodeForward(model)


def effective_weight(module: Any) -> torch.Tensor:
    """The weight a linear layer applies in eval mode: LoRA deltas of active, unmerged
    adapters added to the base weight (peft's own `get_delta_weight`)."""
    if not _is_adapted(module):
        return module.weight
    weight = module.base_layer.weight
    if module.merged or module.disable_adapters:
        return weight
    for name in module.active_adapters:
        if name in module.lora_A:
            weight = weight + module.get_delta_weight(name)
    return weight


def _bias(module: Any) -> torch.Tensor | None:
    return module.base_layer.bias if _is_adapted(module) else module.bias


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast would cast matmul weights to at every call, if it is on: the
    snapshot casts them once per rollout instead (the same rounding)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


def _cast(weight: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return weight if dtype is None or not weight.is_floating_point() else weight.to(dtype)


def _gather_block(layer: Any, matmul_dtype: torch.dtype | None) -> _Block:
    attn, mlp = layer.self_attn, layer.mlp
    projections = [attn.q_proj, attn.k_proj, attn.v_proj]
    biases = [_bias(m) for m in projections]
    qkv_bias = None
    if any(b is not None for b in biases):
        qkv_bias = torch.cat([
            b if b is not None else effective_weight(m).new_zeros(effective_weight(m).shape[0])
            for b, m in zip(biases, projections, strict=True)
        ])
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    return _Block(
        input_norm=layer.input_layernorm.weight,
        qkv=_cast(torch.cat([effective_weight(m) for m in projections]), matmul_dtype),
        qkv_bias=qkv_bias,
        q_norm=None if q_norm is None else q_norm.weight,
        k_norm=None if k_norm is None else k_norm.weight,
        out=_cast(effective_weight(attn.o_proj), matmul_dtype),
        post_norm=layer.post_attention_layernorm.weight,
        gate_up=_cast(torch.cat([effective_weight(mlp.gate_proj),
                                 effective_weight(mlp.up_proj)]), matmul_dtype),
        down=_cast(effective_weight(mlp.down_proj), matmul_dtype),
    )


def _unwrap(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _is_adapted(module: Any) -> bool:
    return hasattr(module, "base_layer") and hasattr(module, "lora_A")


def _plain_or_lora(module: Any) -> bool:
    if isinstance(module, torch.nn.Linear) and not _is_adapted(module):
        return True
    if not _is_adapted(module) or not isinstance(module.base_layer, torch.nn.Linear):
        return False
    if any(getattr(module, "use_dora", {}).values()):
        return False
    return not getattr(module, "lora_embedding_A", None)
