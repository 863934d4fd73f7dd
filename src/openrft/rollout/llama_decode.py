"""A lean forward for decoding Llama-family models (Llama, Mistral without a sliding
window, Qwen2, Qwen3), used by `BatchDecoder` in place of the transformers module.

Why: GRPO spends its rollout time in ~T small forwards of one token per row. Through the
transformers modules each one pays for mask building, cache bookkeeping and ~7 separate
linear layers per block (plus 2 more matmuls per LoRA-adapted layer). Here the weights
are gathered once per rollout into fused matrices (q|k|v and gate|up, LoRA deltas merged
in, as eval-mode LoRA computes W + scale * B @ A anyway) and, on CPU, prepacked for
oneDNN (`Linear`); the KV cache is a pre-allocated buffer written in place (a group's
long prompt held once, `SharedPromptCache`), and a block is ~15 tensor ops. The arithmetic is
the model's own: its rotary embedding module, its RMSNorm epsilon, its attention scale.

Anything this module does not reproduce exactly (other architectures, sliding windows,
biased MLPs, DoRA, adapted embeddings, attention dropout) makes `fast_decode_for` return
None and the decoder falls back to the transformers forward.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


@dataclass
class Linear:
    """One (fused) linear layer of the decode, weight (out, in) and bias.

    On CPU in float32 the weight is laid out once per rollout (`pack`) in oneDNN's
    blocked format, as inductor's weight prepacking does: F.linear lays the weight out
    again inside every call, which for a decode step's 64-row matmuls is a large part of
    their cost (m5: 3.9 vs 5.4 ms of matmuls per token; m20: 17.8 vs 21.9 ms). The result
    is the same product up to float32 summation order.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    packed: torch.Tensor | None = None

    def pack(self, rows: int) -> None:
        """Prepack for inputs of about `rows` rows, where oneDNN can run it."""
        weight = self.weight
        if weight.device.type == "cpu" and weight.dtype == torch.float32 and _onednn_linear():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


@functools.cache
def _onednn_linear() -> bool:
    """Whether this torch build runs prepacked oneDNN linears correctly (x86 builds do;
    the ops are inductor's, so a build without them falls back to F.linear)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with torch.inference_mode():
            weight = torch.linspace(-1, 1, 24).view(6, 4)
            x = torch.linspace(0, 1, 12).view(3, 4)
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, 3)
            out = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return bool(torch.allclose(out, x @ weight.T, atol=1e-5))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


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


@dataclass
class LayerRecord:
    """The outputs of one block's four matmuls at every position a rollout ran."""

    qkv: torch.Tensor  # (R, L, (heads + 2 * kv_heads) * head_dim), bias included
    out: torch.Tensor  # (R, L, hidden) attention output projection
    gate_up: torch.Tensor  # (R, L, 2 * intermediate)
    down: torch.Tensor  # (R, L, hidden)


RECORDED = ("qkv", "out", "gate_up", "down")  # LayerRecord's fields, in block order


@dataclass
class ForwardTape:
    """What a recorded rollout computed, so that an on-policy update can take its forward
    pass from here instead of running the model again (`rl.replay`).

    Columns are the decode's own: P left-padded prompt positions, then one per token fed
    back. Logit row t is the distribution completion token t was sampled from.
    """

    input_ids: torch.Tensor  # (R, L) prompt then the completion tokens fed back
    positions: torch.Tensor  # (R, L) rotary positions (real tokens only are counted)
    key_valid: torch.Tensor  # (R, L) bool: False at left padding
    prompt_length: int  # P
    layers: list[LayerRecord] = field(default_factory=list)
    logits: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # (R, T, V)
    length: int = 0  # positions run so far
    steps: int = 0  # logit rows written so far

    def truncated(self) -> ForwardTape:
        """The tape cut to what was run (the buffers were sized for max_tokens)."""
        cut = [LayerRecord(*(getattr(r, f)[:, : self.length] for f in RECORDED))
               for r in self.layers]
        return ForwardTape(self.input_ids[:, : self.length], self.positions[:, : self.length],
                           self.key_valid[:, : self.length], self.prompt_length, cut,
                           self.logits[:, : self.steps], self.length, self.steps)

    def keep_rows(self, rows: torch.Tensor) -> ForwardTape:
        """The tape of `rows` only (ascending indices). The kept rows are moved to the
        front of this tape's own buffers, so nothing tape-sized is allocated; this tape is
        used up."""
        arrays = [self.input_ids, self.positions, self.key_valid, self.logits,
                  *(getattr(r, f) for r in self.layers for f in RECORDED)]
        for target, source in enumerate(rows.tolist()):
            if target != source:
                for array in arrays:
                    array[target].copy_(array[source])
        n = len(rows)
        cut = [LayerRecord(*(getattr(r, f)[:n] for f in RECORDED)) for r in self.layers]
        return ForwardTape(self.input_ids[:n], self.positions[:n], self.key_valid[:n],
                           self.prompt_length, cut, self.logits[:n], self.length, self.steps)


class BufferPool:
    """Uninitialised buffers by name, reused from one recorded rollout to the next.

    Why: a recorded rollout writes a few hundred MB of fresh memory (its tape), and on
    Linux each new 4 KiB page costs a page fault: ~0.15 s per rollout at 5M parameters,
    10 % of a GRPO step. (The KV cache is not pooled: it is dead during the update, and
    pooled it would add to the update's peak memory.) The contract: a buffer handed out is
    only valid until the same name is taken again, i.e. a tape lives until the next
    recorded rollout of the same engine (the trainer consumes it in between).
    """

    def __init__(self) -> None:
        self._flat: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        size = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.numel() < size or flat.dtype != like.dtype or (
                flat.device != like.device):
            flat = _plain_empty(like, (size,))
            self._flat[name] = flat
        return flat[:size].view(shape)


SHARED_PROMPT_MIN_TOKENS = 32  # from here on a group's prompt is cached once. Recorded
# m5 rollouts of 8 prompts x 8 rows x 64 tokens: even at 16 prompt tokens, 4% faster at
# 32, 0.99 vs 1.45 s at 200.


class RowCache:
    """One layer's keys and values, every row its own (R, kv_heads, capacity, head_dim)
    buffer, the prompt copied into each row that repeats it."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor,
                 capacity: int, copies: torch.Tensor | None) -> None:
        rows, length = valid.shape
        shape = (rows, k.shape[1], capacity, k.shape[-1])
        self.keys, self.values = k.new_empty(shape), v.new_empty(shape)  # not pooled
        self.keys[:, :, :length] = copied_rows(k, copies)
        self.values[:, :, :length] = copied_rows(v, copies)
        self.bias = None  # (R, 1, 1, capacity) -inf at left padding; None: no padding
        if not bool(valid.all()):
            self.bias = torch.zeros(rows, 1, 1, capacity, device=k.device, dtype=k.dtype)
            self.bias[:, 0, 0, :length].masked_fill_(~valid, float("-inf"))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position: int,
               scale: float) -> torch.Tensor:
        """Store one position's k, v (R, kv_heads, 1, head_dim); attend to all so far."""
        end = position + 1
        self.keys[:, :, position:end] = k
        self.values[:, :, position:end] = v
        bias = None if self.bias is None else self.bias[..., :end]
        return F.scaled_dot_product_attention(
            q, self.keys[:, :, :end], self.values[:, :, :end], attn_mask=bias, scale=scale,
            enable_gqa=k.shape[1] != q.shape[1])


class SharedPromptCache:
    """One layer's keys and values with each distinct prompt's held once and the
    completions' per row, for rows that repeat each prompt `group` times in a row
    (GRPO's layout, `grouped_repeats`).

    Why: at every token each row's attention reads its whole cache, and with long
    prompts that is mostly the prompt, the same for a whole group. Here a step attends to
    a group's prompt once (its rows' queries batched together) and to each row's own
    completion, and merges the two softmaxes by their log-sum-exps: the same attention,
    with the prompt read 1/group as often (m5 attention at 200 prompt tokens: 230 vs
    560 ms per 64-token rollout of 8 x 8 rows).
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, extra: int,
                 group: int, copies: torch.Tensor) -> None:
        order = copies[::group]  # the distinct prompt of each group of rows
        self.prompt_keys, self.prompt_values = k[order], v[order]  # (D, kv, P, head_dim)
        valid = valid[order]
        self.group = group
        shape = (k.shape[0] * group, k.shape[1], extra, k.shape[-1])
        self.keys, self.values = k.new_empty(shape), v.new_empty(shape)  # not pooled
        self.start = valid.shape[1]  # the position of the first completion token
        self.bias = None  # (D, 1, 1, P) -inf at left padding; None: no padding
        if not bool(valid.all()):
            self.bias = torch.zeros(valid.shape[0], 1, 1, valid.shape[1], device=k.device,
                                    dtype=k.dtype).masked_fill_(~valid[:, None, None],
                                                                float("-inf"))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position: int,
               scale: float) -> torch.Tensor:
        """Store one position's k, v (R, kv_heads, 1, head_dim); attend to all so far."""
        rows, heads, _, head_dim = q.shape
        kv_heads = k.shape[1]
        distinct, end = self.prompt_keys.shape[0], position - self.start + 1
        self.keys[:, :, end - 1 : end] = k
        self.values[:, :, end - 1 : end] = v
        # Grouped queries of one key/value head are attended as one query block of
        # (group x heads-per-kv-head) rows: no copy of the keys per query head.
        per_kv = q.view(rows, kv_heads, heads // kv_heads, head_dim)
        grouped = per_kv.view(distinct, self.group, kv_heads, -1, head_dim).transpose(1, 2)
        prompt_out, prompt_lse = _attention_with_lse(
            grouped.reshape(distinct, kv_heads, -1, head_dim), self.prompt_keys,
            self.prompt_values, self.bias, scale)
        prompt_out = prompt_out.view(distinct, kv_heads, self.group, -1, head_dim
                                     ).transpose(1, 2).reshape(rows, heads, head_dim)
        prompt_lse = prompt_lse.view(distinct, kv_heads, self.group, -1
                                     ).transpose(1, 2).reshape(rows, heads)
        own_out, own_lse = _attention_with_lse(per_kv, self.keys[:, :, :end],
                                               self.values[:, :, :end], None, scale)
        own_out, own_lse = own_out.reshape(rows, heads, head_dim), own_lse.reshape(rows, heads)
        top = torch.maximum(prompt_lse, own_lse)
        prompt_weight, own_weight = (prompt_lse - top).exp_(), (own_lse - top).exp_()
        out = prompt_out.mul_(prompt_weight[..., None]).addcmul_(own_out, own_weight[..., None])
        return out.div_((prompt_weight + own_weight)[..., None]).unsqueeze(2)


def _attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        bias: torch.Tensor | None, scale: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + bias) v and the log-sum-exp of each query's scores
    (torch's own CPU flash-attention kernel, which returns both). Under autocast q and k
    leave the rotary embedding in float32 and v is bf16: all run in v's dtype, as autocast
    runs F.scaled_dot_product_attention."""
    q, k = q.to(v.dtype), k.to(v.dtype)
    bias = None if bias is None else bias.to(v.dtype)
    if q.device.type != "cpu":
        return plain_attention_with_lse(q, k, v, bias, scale)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, attn_mask=bias, scale=scale)
    return out, lse


def plain_attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             bias: torch.Tensor | None, scale: float
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """`_attention_with_lse` from plain tensor ops (softmax in float32, as the CPU kernel
    does), for devices without that kernel."""
    scores = torch.matmul(q, k.transpose(-1, -2)).float().mul_(scale)
    if bias is not None:
        scores = scores + bias
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul((scores - lse[..., None]).exp_().to(v.dtype), v), lse


def grouped_repeats(copies: torch.Tensor | None, rows: int) -> int:
    """G when the rows are the distinct prompts each repeated G times in a row, in any
    order of prompts, else 1 (`copies`: `distinct_rows`' inverse; None: all distinct)."""
    if copies is None:
        return 1
    distinct = int(copies.max()) + 1
    group = rows // distinct
    if group * distinct != rows:
        return 1
    groups = copies.view(distinct, group)
    one_prompt_each = bool((groups == groups[:, :1]).all())
    if not one_prompt_each or len(torch.unique(groups[:, 0])) != distinct:
        return 1
    return group


class LlamaDecodeForward:
    """prefill(...) then step(...) repeatedly; both return last-position logits (R, V).
    With `record`, every matmul output is also kept in `tape` (see ForwardTape); with a
    `pool`, the tape's buffers are taken from it."""

    @torch.no_grad()  # a snapshot of the weights for this rollout, outside any graph
    def __init__(self, model: Any, record: bool = False, pool: BufferPool | None = None
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
                              _bias(base.lm_head))
        self.blocks = [_gather_block(layer, matmul_dtype) for layer in inner.layers]
        self.caches: list[RowCache | SharedPromptCache] = []  # one per layer
        self.length = 0
        self.record = record
        self.pool = pool
        self.tape: ForwardTape | None = None

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor, extra: int) -> torch.Tensor:
        """Run the (R, P) left-padded prompts, keep room for `extra` more positions.

        Identical rows (GRPO repeats each prompt group_size times) are run once and their
        cache copied to every row that repeats them: the prefill costs distinct prompts.
        """
        rows, length = input_ids.shape
        capacity = length + extra
        for linear in [self.lm_head, *(lin for block in self.blocks for lin in block.linears())]:
            linear.pack(rows)  # for the decode steps' shape: one token per row
        key_valid = attention_mask.bool()
        self.caches, self.length = [], 0
        if self.record:
            self.tape = _new_tape(input_ids, positions, key_valid, capacity)
        first, copies = distinct_rows(torch.cat([input_ids, attention_mask], dim=1))
        group = grouped_repeats(copies, rows)
        shared = group > 1 and length >= SHARED_PROMPT_MIN_TOKENS
        self._new_cache = functools.partial(
            SharedPromptCache, valid=key_valid[first], extra=extra, group=group,
            copies=copies) if shared \
            else functools.partial(RowCache, valid=key_valid, capacity=capacity, copies=copies)
        hidden = self._run(input_ids[first], positions[first], prompt_mask(key_valid[first]),
                           capacity, copies)
        return self._logits(hidden[:, -1], copies)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One token per row: tokens (R,), positions (R,) -> logits (R, V)."""
        if self.tape is not None:
            self.tape.input_ids[:, self.length] = tokens
            self.tape.positions[:, self.length] = positions
        hidden = self._run(tokens[:, None], positions[:, None], None, 0)
        return self._logits(hidden[:, -1])

    def _run(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
             capacity: int, copies: torch.Tensor | None = None) -> torch.Tensor:
        """Run `ids` through the blocks. A prefill (capacity > 0, `mask` its attention mask)
        makes each layer's cache, for `copies` rows (row i holds the result of ids row
        copies[i]) when given; a decode step (one token per row) attends through it."""
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
            if capacity:  # prefill: the prompts attend to themselves, then fill the cache
                attn = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, scale=self.scale,
                    enable_gqa=self.kv_heads != self.heads)
                self.caches.append(self._new_cache(k, v))
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
        return _plain_empty(like, shape)


def distinct_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(one row index per distinct row, which of those each row equals), or (all rows,
    None) when every row is distinct."""
    distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)
    everything = torch.arange(rows.shape[0], device=rows.device)
    if distinct.shape[0] == rows.shape[0]:
        return everything, None
    first = torch.full((distinct.shape[0],), rows.shape[0], device=rows.device)
    first.scatter_reduce_(0, inverse, everything, reduce="amin")
    return first, inverse


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


def copied_rows(values: torch.Tensor, copies: torch.Tensor | None) -> torch.Tensor:
    """`values` with row i taken from row copies[i] (`distinct_rows`' inverse), or as is."""
    return values if copies is None else values[copies]


def prompt_mask(key_valid: torch.Tensor) -> torch.Tensor:
    """(R, 1, P, P) bool attention mask of left-padded prompts: causal, valid keys only,
    and every query sees itself so that all-padding rows stay finite (their output is
    unused)."""
    length = key_valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=key_valid.device).tril()
    own = torch.eye(length, dtype=torch.bool, device=key_valid.device)
    return causal & (key_valid[:, None, None, :] | own)


def joined_bias(modules: list[Any]) -> torch.Tensor | None:
    """The biases of linear `modules` (plain or LoRA) in the order of their concatenated
    outputs, zeros for a module without one; None when none has a bias."""
    biases = [_bias(m) for m in modules]
    if all(b is None for b in biases):
        return None
    if len(biases) == 1:
        return biases[0]
    weights = [m.base_layer.weight if is_lora_layer(m) else m.weight for m in modules]
    return torch.cat([b if b is not None else w.new_zeros(w.shape[0])
                      for b, w in zip(biases, weights, strict=True)])


def _plain_empty(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised buffer that autograd may use later: the decode loop runs under
    inference mode, whose own tensors can never be saved for backward."""
    with torch.inference_mode(False):
        return like.new_empty(shape)


def _new_tape(input_ids: torch.Tensor, positions: torch.Tensor, key_valid: torch.Tensor,
              capacity: int) -> ForwardTape:
    rows, length = input_ids.shape
    with torch.inference_mode(False):
        tape = ForwardTape(input_ids.new_zeros(rows, capacity),
                           positions.new_zeros(rows, capacity),
                           key_valid.new_ones(rows, capacity), length)
    tape.input_ids[:, :length] = input_ids
    tape.positions[:, :length] = positions
    tape.key_valid[:, :length] = key_valid
    return tape


def attention_shape(config: Any) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dim) of a Llama-family config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return heads, kv_heads, getattr(config, "head_dim", None) or config.hidden_size // heads


def fast_decode_for(model: Any, record: bool = False, pool: BufferPool | None = None
                    ) -> LlamaDecodeForward | None:
    """The lean forward when `model` is one it reproduces exactly, else None."""
    base = unwrap_peft(model)
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
    if is_lora_layer(inner.embed_tokens):
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
    return LlamaDecodeForward(model, record, pool)


def effective_weight(module: Any) -> torch.Tensor:
    """The weight a linear layer applies in eval mode: LoRA deltas of active, unmerged
    adapters added to the base weight (peft's own `get_delta_weight`)."""
    if not is_lora_layer(module):
        return module.weight
    weight = module.base_layer.weight
    if module.merged or module.disable_adapters:
        return weight
    for name in module.active_adapters:
        if name in module.lora_A:
            weight = weight + module.get_delta_weight(name)
    return weight


def _bias(module: Any) -> torch.Tensor | None:
    return module.base_layer.bias if is_lora_layer(module) else module.bias


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


def unwrap_peft(model: Any) -> Any:
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_lora_layer(module: Any) -> bool:
    """A peft LoRA layer wrapping a base layer."""
    return hasattr(module, "base_layer") and hasattr(module, "lora_A")


def _plain_or_lora(module: Any) -> bool:
    if isinstance(module, torch.nn.Linear) and not is_lora_layer(module):
        return True
    if not is_lora_layer(module) or not isinstance(module.base_layer, torch.nn.Linear):
        return False
    if any(getattr(module, "use_dora", {}).values()):
        return False
    return not getattr(module, "lora_embedding_A", None)
