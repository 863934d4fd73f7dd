"""A lean forward for decoding Llama-family models (Llama, Mistral without a sliding
window, Qwen2, Qwen3), used by the HF engine's decode in place of the transformers modules.

Why: GRPO spends its rollout time in ~T small forwards of one token per row. Through the
transformers modules each one pays for mask building, cache bookkeeping and ~7 separate
linear layers per block (plus 2 more matmuls per LoRA-adapted layer). Here the weights
are gathered once per rollout into fused matrices (q|k|v and gate|up, LoRA deltas merged
in, as eval-mode LoRA computes W + scale * B @ A anyway) and, on CPU, prepacked for
oneDNN (`Linear`); the KV cache is a pre-allocated buffer written in place (`kv_cache`:
a group's long prompt held once), and a block is ~15 tensor ops. With `record` the matmul
outputs are kept for the update (`forward_tape`). The arithmetic is the model's own: its
rotary embedding module, its RMSNorm epsilon, its attention scale.

Anything this module does not reproduce exactly (other architectures, sliding windows,
biased MLPs, DoRA, adapted embeddings, attention dropout) makes `fast_decode_for` return
None and the decoder falls back to the transformers forward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from openrft.fast.forward_tape import (
    RECORDED,
    BufferPool,
    ForwardTape,
    LayerRecord,
    new_tape,
    plain_empty,
)
from openrft.fast.kv_cache import (
    RowCache,
    SharedPromptCache,
    copied_rows,
    distinct_rows,
    grouped_repeats,
)
from openrft.fast.peft_layers import (
    bias_of,
    effective_weight,
    is_lora_layer,
    joined_bias,
    plain_or_lora,
    unwrap_peft,
)
from openrft.fast.probes import onednn_linear
from openrft.rollout.engine import CausalLM

SUPPORTED_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


@dataclass
class Linear:
    """One (fused) linear layer of the decode, weight (out, in) and bias.

    On CPU in float32 the weight is laid out once per rollout (`pack`) in oneDNN's
    blocked format, as inductor's weight prepacking does: F.linear lays the weight out
    again inside every call, which for a decode step's 64-row matmuls is a large part of
    their cost (BENCHMARKS.md, "Fast-path micro-measurements"). The result is the same
    product up to float32 summation order.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    packed: torch.Tensor | None = None

    def pack(self, rows: int) -> None:
        """Prepack for inputs of about `rows` rows, where oneDNN can run it."""
        weight = self.weight
        if weight.device.type == "cpu" and weight.dtype == torch.float32 and onednn_linear():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


@dataclass
class _Block:
    """One decoder layer's weights, fused for decoding."""

    input_norm: torch.Tensor
    qkv: Linear  # (heads + 2 * kv_heads) * head_dim rows
    q_norm: torch.Tensor | None  # Qwen3 normalises q and k per head
    k_norm: torch.Tensor | None
    out: Linear
    post_norm: torch.Tensor
    gate_up: Linear
    down: Linear

    def linears(self) -> list[Linear]:
        return [self.qkv, self.out, self.gate_up, self.down]


SHARED_PROMPT_MIN_TOKENS = 32  # from here on a group's prompt is cached once (where it
# starts to pay: BENCHMARKS.md, "Fast-path micro-measurements").


class LlamaDecodeForward:
    """prefill(...) then step(...) repeatedly; both return last-position logits (R, V).
    With `record`, every matmul output is also kept in `tape` (see ForwardTape); with a
    `pool`, the tape's buffers are taken from it."""

    @torch.no_grad()  # a snapshot of the weights for this rollout, outside any graph
    def __init__(self, model: CausalLM, record: bool = False, pool: BufferPool | None = None
                 ) -> None:
        base = unwrap_peft(model)
        config, inner = base.config, base.model
        self.eps = config.rms_norm_eps
        self.heads, self.kv_heads, self.head_dim = attention_shape(config)
        self.scale = inner.layers[0].self_attn.scaling
        self.rotary = inner.rotary_emb
        self.embed = inner.embed_tokens.weight
        self.final_norm = inner.norm.weight
        matmul_dtype = _autocast_dtype(self.embed.device)
        self.lm_head = Linear(_cast(effective_weight(base.lm_head), matmul_dtype),
                              bias_of(base.lm_head))
        self.blocks = [_gather_block(layer, matmul_dtype) for layer in inner.layers]
        self.caches: list[RowCache | SharedPromptCache] = []  # one per layer
        # how the prefill makes a layer's cache from its prompt keys and values
        self.new_cache: Callable[[torch.Tensor, torch.Tensor], RowCache | SharedPromptCache]
        self.length = 0
        self.record = record
        self.pool = pool
        self.tape: ForwardTape | None = None

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor, extra: int) -> torch.Tensor:
        """Run the (R, P) left-padded prompts, keep room for `extra` more positions.

        Identical rows (GRPO repeats each prompt group_size times) are run once: the
        prefill costs distinct prompts. Their keys and values are copied to every row that
        repeats them (`RowCache`) or, for long prompts repeated in whole groups, held once
        per group (`SharedPromptCache`).
        """
        rows, length = input_ids.shape
        capacity = length + extra
        for linear in [self.lm_head, *(lin for block in self.blocks for lin in block.linears())]:
            linear.pack(rows)  # for the decode steps' shape: one token per row
        key_valid = attention_mask.bool()
        self.caches, self.length = [], 0
        if self.record:
            self.tape = new_tape(input_ids, positions, key_valid, capacity, self.pool)
        first, copies = distinct_rows(torch.cat([input_ids, attention_mask], dim=1))
        group = grouped_repeats(copies, rows)
        if copies is not None and group > 1 and length >= SHARED_PROMPT_MIN_TOKENS:
            self.new_cache = functools.partial(SharedPromptCache, valid=key_valid[first],
                                               extra=extra, group=group, copies=copies)
        else:
            self.new_cache = functools.partial(RowCache, valid=key_valid, capacity=capacity,
                                               copies=copies)
        hidden = self._run(input_ids[first], positions[first], prompt_mask(key_valid[first]),
                           capacity, copies)
        return self._logits(hidden[:, -1], copies)

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only cache rows `rows` (a continued episode batch, rollout/turns.py)."""
        self.caches = [row_cache(cache, self.length).kept(rows) for cache in self.caches]

    def extend(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               positions: torch.Tensor, extra: int) -> torch.Tensor:
        """Run (R, N) more tokens per row on top of the cache; `attention_mask`
        (R, length + N) covers the cached positions and the new ones."""
        if self.record:
            raise RuntimeError("a recording decode cannot continue its cache")
        valid = attention_mask.bool()
        self.caches = [row_cache(cache, self.length) for cache in self.caches]
        hidden = self._run(input_ids, positions, continued_mask(valid, input_ids.shape[1]),
                           valid.shape[1] + extra, continued=valid)
        return self._logits(hidden[:, -1])

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One token per row: tokens (R,), positions (R,) -> logits (R, V)."""
        if self.tape is not None:
            self.tape.input_ids[:, self.length] = tokens
            self.tape.positions[:, self.length] = positions
        hidden = self._run(tokens[:, None], positions[:, None], None, 0)
        return self._logits(hidden[:, -1])

    def _run(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
             capacity: int, copies: torch.Tensor | None = None,
             continued: torch.Tensor | None = None) -> torch.Tensor:
        """Run `ids` through the blocks. A prefill (capacity > 0, `mask` its attention mask)
        makes each layer's cache, for `copies` rows (row i holds the result of ids row
        copies[i]) when given, or extends it (`continued`: which of the cached and new
        positions hold real tokens); a decode step (one token per row) attends through it."""
        rows, length = ids.shape
        x = F.embedding(ids, self.embed)
        cos, sin = self.rotary(x, positions)
        start, end = self.length, self.length + length
        for index, block in enumerate(self.blocks):
            h = F.rms_norm(x, x.shape[-1:], block.input_norm, self.eps)
            qkv_out = block.qkv(h)
            qkv = qkv_out.view(rows, length, -1, self.head_dim)
            q, k, v = qkv.split([self.heads, self.kv_heads, self.kv_heads], dim=2)
            if block.q_norm is not None and block.k_norm is not None:
                q = F.rms_norm(q, q.shape[-1:], block.q_norm, self.eps)
                k = F.rms_norm(k, k.shape[-1:], block.k_norm, self.eps)
            q, k = rotated(q.transpose(1, 2), cos, sin), rotated(k.transpose(1, 2), cos, sin)
            v = v.transpose(1, 2)
            if continued is not None:  # the new tokens join the cache, then attend to it
                cache = self.caches[index]
                assert isinstance(cache, RowCache)
                cache = self.caches[index] = cache.extended(k, v, continued, capacity)
                attn = F.scaled_dot_product_attention(
                    q, cache.keys[:, :, :end], cache.values[:, :, :end],
                    attn_mask=mask, scale=self.scale, enable_gqa=self.kv_heads != self.heads)
            elif capacity:  # prefill: the prompts attend to themselves, then fill the cache
                attn = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, scale=self.scale,
                    enable_gqa=self.kv_heads != self.heads)
                self.caches.append(self.new_cache(k, v))
            else:
                attn = self.caches[index].attend(q, k, v, start, self.scale)
            out = block.out(attn.transpose(1, 2).reshape(rows, length, -1))
            x = x + out
            h = F.rms_norm(x, x.shape[-1:], block.post_norm, self.eps)
            gate_up = block.gate_up(h)
            gate, up = gate_up.chunk(2, dim=-1)
            down = block.down(F.silu(gate) * up)
            x = x + down
            if self.tape is not None:
                outputs = [copied_rows(o, copies) for o in (qkv_out, out, gate_up, down)]
                if capacity:
                    self.tape.layers.append(LayerRecord(*(
                        self._empty(f"{name}.{index}", (o.shape[0], capacity, o.shape[-1]), o)
                        for name, o in zip(RECORDED, outputs, strict=True))))
                record = self.tape.layers[index]
                for name, value in zip(RECORDED, outputs, strict=True):
                    getattr(record, name)[:, start:end] = value
        self.length = end
        if self.tape is not None:
            self.tape.length = end
        return x

    def _logits(self, last_hidden: torch.Tensor, copies: torch.Tensor | None = None
                ) -> torch.Tensor:
        h = F.rms_norm(last_hidden, last_hidden.shape[-1:], self.final_norm, self.eps)
        logits = copied_rows(self.lm_head(h), copies)
        tape = self.tape
        if tape is not None:
            if tape.steps == 0:  # room for one row per position a token can be sampled at
                steps = tape.input_ids.shape[1] - tape.prompt_length
                tape.logits = self._empty("logits", (logits.shape[0], steps, logits.shape[1]),
                                          logits)
            tape.logits[:, tape.steps] = logits
            tape.steps += 1
        return logits

    def _empty(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            return self.pool.take(name, shape, like)
        return plain_empty(like, shape)


def rotated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' rotary embedding x * cos + rotate_half(x) * sin, for x (R, heads, L, D)
    and the rotary module's cos, sin (R, L, D), in three kernels where rotate_half's slices,
    negation and cat make seven (the decode runs it twice per layer and token)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = x.shape[-1] // 2
    out = x * cos
    out[..., :half].addcmul_(x[..., half:], sin[..., :half], value=-1)
    out[..., half:].addcmul_(x[..., :half], sin[..., half:])
    return out


def prompt_mask(key_valid: torch.Tensor) -> torch.Tensor:
    """(R, 1, P, P) bool attention mask of left-padded prompts: causal, valid keys only,
    and every query sees itself so that all-padding rows stay finite (their output is
    unused)."""
    length = key_valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=key_valid.device).tril()
    own = torch.eye(length, dtype=torch.bool, device=key_valid.device)
    return causal & (key_valid[:, None, None, :] | own)


def continued_mask(valid: torch.Tensor, new: int) -> torch.Tensor:
    """(R, 1, N, L + N) bool attention mask of N new tokens after L cached positions:
    causal, valid keys only (`valid` (R, L + N)), every query sees itself."""
    total = valid.shape[1]
    keys = torch.arange(total, device=valid.device)
    queries = torch.arange(total - new, total, device=valid.device)
    causal, own = keys <= queries[:, None], keys == queries[:, None]  # (N, L + N)
    return causal & (valid[:, None, None, :] | own)


def row_cache(cache: RowCache | SharedPromptCache, length: int) -> RowCache:
    """`cache` (holding `length` positions) as a RowCache."""
    return cache if isinstance(cache, RowCache) else cache.as_row_cache(length)


def attention_shape(config: Any) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dim) of a Llama-family config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return heads, kv_heads, getattr(config, "head_dim", None) or config.hidden_size // heads


def fast_decode_for(model: CausalLM, record: bool = False, pool: BufferPool | None = None
                    ) -> LlamaDecodeForward | None:
    """The lean forward when `model` is one it reproduces exactly, else None."""
    base = unwrap_peft(model)
    config = getattr(base, "config", None)
    if any(p.device.type != "cpu" for p in base.parameters()):
        return None  # written and measured for the CPU; on a GPU it mixed LoRA/bf16 dtypes
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
    if is_lora_layer(inner.embed_tokens):
        return None
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj,
                   mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        if not all(plain_or_lora(m) for m in [*linears, base.lm_head]):
            return None
        if any(bias_of(m) is not None for m in [attn.o_proj, mlp.gate_proj, mlp.up_proj,
                                               mlp.down_proj]):
            return None
    return LlamaDecodeForward(model, record, pool)


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
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    return _Block(
        input_norm=layer.input_layernorm.weight,
        qkv=Linear(_cast(torch.cat([effective_weight(m) for m in projections]), matmul_dtype),
                   joined_bias(projections)),
        q_norm=None if q_norm is None else q_norm.weight,
        k_norm=None if k_norm is None else k_norm.weight,
        out=Linear(_cast(effective_weight(attn.o_proj), matmul_dtype)),
        post_norm=layer.post_attention_layernorm.weight,
        gate_up=Linear(_cast(torch.cat([effective_weight(mlp.gate_proj),
                                        effective_weight(mlp.up_proj)]), matmul_dtype)),
        down=Linear(_cast(effective_weight(mlp.down_proj), matmul_dtype)),
    )
