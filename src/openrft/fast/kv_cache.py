"""The decode's per-layer KV caches: every row its own (`RowCache`), or a group's prompt
held once (`SharedPromptCache`), and the helpers for prompts that rows repeat."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from openrft.fast.probes import cpu_flash_attention_with_lse


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

    def kept(self, rows: torch.Tensor) -> RowCache:
        """This cache with only rows `rows` (R',), in that order."""
        return _row_cache(self.keys[rows], self.values[rows],
                          None if self.bias is None else self.bias[rows])

    def extended(self, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor,
                 capacity: int) -> RowCache:
        """A cache of `capacity` positions holding this one's first `valid.shape[1] - N`
        positions then the N new ones k, v (R, kv_heads, N, head_dim); `valid` (R, L + N)
        says which positions hold real tokens (a continued episode, rollout/turns.py)."""
        start, end = valid.shape[1] - k.shape[2], valid.shape[1]
        shape = (*k.shape[:2], capacity, k.shape[-1])
        keys, values = k.new_empty(shape), v.new_empty(shape)
        keys[:, :, :start] = self.keys[:, :, :start]
        values[:, :, :start] = self.values[:, :, :start]
        keys[:, :, start:end], values[:, :, start:end] = k, v
        bias = torch.zeros(k.shape[0], 1, 1, capacity, device=k.device, dtype=k.dtype)
        bias[:, 0, 0, :end].masked_fill_(~valid, float("-inf"))
        return _row_cache(keys, values, bias)

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


def _row_cache(keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None
               ) -> RowCache:
    """A RowCache around existing buffers."""
    cache = RowCache.__new__(RowCache)
    cache.keys, cache.values, cache.bias = keys, values, bias
    return cache


class SharedPromptCache:
    """One layer's keys and values with each distinct prompt's held once and the
    completions' per row, for rows that repeat each prompt `group` times in a row
    (GRPO's layout, `grouped_repeats`).

    Why: at every token each row's attention reads its whole cache, and with long
    prompts that is mostly the prompt, the same for a whole group. Here a step attends to
    a group's prompt once (its rows' queries batched together) and to each row's own
    completion, and merges the two softmaxes by their log-sum-exps: the same attention,
    with the prompt read 1/group as often (timing: BENCHMARKS.md, "Fast-path
    micro-measurements").
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

    def as_row_cache(self, length: int) -> RowCache:
        """The first `length` positions as a RowCache: each group's prompt copied into its
        rows (a continued episode's rows part ways)."""
        prompt_keys = self.prompt_keys.repeat_interleave(self.group, dim=0)
        prompt_values = self.prompt_values.repeat_interleave(self.group, dim=0)
        own = length - self.start
        keys = torch.cat([prompt_keys, self.keys[:, :, :own]], dim=2)
        values = torch.cat([prompt_values, self.values[:, :, :own]], dim=2)
        bias = None
        if self.bias is not None:
            bias = torch.zeros(keys.shape[0], 1, 1, length, device=keys.device,
                               dtype=keys.dtype)
            bias[..., : self.start] = self.bias.repeat_interleave(self.group, dim=0)
        return _row_cache(keys, values, bias)

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
    (torch's own CPU flash-attention kernel, which returns both, where `probes` finds it;
    else `plain_attention_with_lse`). Under autocast q and k
    leave the rotary embedding in float32 and v is bf16: all run in v's dtype, as autocast
    runs F.scaled_dot_product_attention."""
    q, k = q.to(v.dtype), k.to(v.dtype)
    bias = None if bias is None else bias.to(v.dtype)
    if q.device.type != "cpu" or not cpu_flash_attention_with_lse():
        return plain_attention_with_lse(q, k, v, bias, scale)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, attn_mask=bias, scale=scale)
    return out, lse


def plain_attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             bias: torch.Tensor | None, scale: float
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """`_attention_with_lse` from public tensor ops (softmax in float32, as the CPU
    kernel does), for devices or builds without that kernel."""
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


def copied_rows(values: torch.Tensor, copies: torch.Tensor | None) -> torch.Tensor:
    """`values` with row i taken from row copies[i] (`distinct_rows`' inverse), or as is."""
    return values if copies is None else values[copies]
