"""On-policy log-probs from the rollout's own forward pass: the update skips its forward.

Why: with one optimizer step per sampled batch (num_iterations == 1) the weights that
sampled a batch are the weights the update differentiates, so the rollout has already
run every matmul of the update's forward pass, one token at a time. `llama_decode`
records their outputs (`ForwardTape`); here the forward is rebuilt under autograd from
them. The matmuls are not run again: `RecordedLinear` returns the recorded output and
only does the backward (recomputing the RMSNorm in front of it there), and
`RecordedLogProbs` turns the recorded logits into log-probs in place. What runs again is
the cheap part: embedding, rotary, attention, SwiGLU and residual sums, with each
distinct prompt run once. The gradients are those of the ordinary forward
(tests/fast/test_replay.py checks them against it: five architectures, full and LoRA).

It applies when the update is the plain on-policy one: one iteration, one micro-batch, no
autocast, no dropout, adapters unmerged. Otherwise `replay_supported` says no and the
update runs its own forward as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from openrft.fast.forward_tape import ForwardTape
from openrft.fast.fused_logprobs import probs_into, probs_to_grad, spend_once
from openrft.fast.kv_cache import copied_rows, distinct_rows
from openrft.fast.llama_decode import attention_shape, prompt_mask, rotated
from openrft.fast.peft_layers import is_lora_layer, joined_bias, unwrap_peft
from openrft.fast.probes import silu_backward_into
from openrft.rl.logprobs import TokenBatch
from openrft.rollout.engine import CausalLM


class RecordedLinear(torch.autograd.Function):
    """F.linear(rms_norm(x), weight, bias) plus LoRA adapters, whose value is already
    known (`output`): the forward returns it and computes nothing, the backward is the
    layers' own. The RMSNorm (`norm_weight`; None: no norm) is recomputed in the backward
    from x, so its output is never stored: x is kept anyway for the residual stream.

    `adapters` lists (first output row, last output row, scale) per adapter and `lora`
    holds its (A, B) weights in the same order: rows [first, last) of the output get
    scale * h @ A^T @ B^T. Their gradients never form the (out, in) product B @ A.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, norm_weight: torch.Tensor | None, eps: float,
                weight: torch.Tensor, bias: torch.Tensor | None, output: torch.Tensor,
                adapters: list[tuple[int, int, float]], *lora: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, norm_weight, weight, *lora)
        ctx.eps, ctx.adapters = eps, adapters
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, norm_weight, weight, *lora = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_x, grad_norm, grad_weight, grad_bias, grad_lora = _normed_linear_backward(
            grad, x, norm_weight, ctx.eps, weight, ctx.adapters, lora,
            needs[0], needs[1], needs[3], needs[4])
        return grad_x, grad_norm, None, grad_weight, grad_bias, None, None, *grad_lora


class RecordedLogProbs(torch.autograd.Function):
    """log_softmax(linear(rms_norm(x)) / temperature)[targets] and the entropy, when the
    logits are recorded already: final norm, LM head and `SelectedLogProbs` in one.

    The recorded buffer (the tape's own, used once) becomes the probs (`probs_into`, in
    place), then the gradient: no vocabulary-sized tensor is allocated (134 MB at
    64 x 128 x 4096, and fresh memory costs page faults). Like SelectedLogProbs it
    backpropagates once.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, norm_weight: torch.Tensor, eps: float,
                weight: torch.Tensor, bias: torch.Tensor | None, logits: torch.Tensor,
                targets: torch.Tensor, temperature: float, with_entropy: bool,
                adapters: list[tuple[int, int, float]], *lora: torch.Tensor) -> Any:
        if temperature != 1.0:
            logits.div_(temperature)
        logp, entropy = probs_into(logits, logits, targets, with_entropy)
        ctx.save_for_backward(x, norm_weight, weight, *lora, logits, targets)
        ctx.eps, ctx.adapters, ctx.temperature, ctx.spent = eps, adapters, temperature, False
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx: Any, grad_logp: torch.Tensor, _grad_entropy: Any) -> Any:
        spend_once(ctx)
        x, norm_weight, weight, *lora, probs, targets = ctx.saved_tensors
        grad = probs_to_grad(probs, targets, grad_logp)
        if ctx.temperature != 1.0:
            grad.div_(ctx.temperature)
        needs = ctx.needs_input_grad
        grad_x, grad_norm, grad_weight, grad_bias, grad_lora = _normed_linear_backward(
            grad, x, norm_weight, ctx.eps, weight, ctx.adapters, lora,
            needs[0], needs[1], needs[3], needs[4])
        return (grad_x, grad_norm, None, grad_weight, grad_bias, None, None, None, None, None,
                *grad_lora)


class SwiGLU(torch.autograd.Function):
    """silu(gate) * up for gate_up = [gate | up] along the last dimension. It keeps only
    its input for the backward (a view of the tape), not silu(gate) as autograd would,
    and writes the gradient of gate and up into one gate_up-shaped tensor, where autograd
    would make two and concatenate them: one intermediate-sized tensor per position and
    layer instead of five (timing: BENCHMARKS.md, "Fast-path micro-measurements").
    """

    @staticmethod
    def forward(ctx: Any, gate_up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate_up)
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (gate_up,) = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        grad_gate_up = gate_up.new_empty(gate_up.shape)
        grad_gate, grad_up = grad_gate_up.chunk(2, dim=-1)
        torch.mul(grad, up, out=grad_gate)
        silu_backward_into(grad_gate, gate)  # autograd's own kernel where the probe finds it
        torch.ops.aten.silu.out(gate, out=grad_up).mul_(grad)  # silu's public out= form
        return grad_gate_up


class Rotary(torch.autograd.Function):
    """The rotary embedding (`rotated`) with its transpose as the backward: three kernels
    each way, where autograd through rotate_half also zero-fills and copies its halves."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
                ) -> torch.Tensor:
        ctx.save_for_backward(cos, sin)
        return rotated(x, cos, sin)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        cos, sin = (t.unsqueeze(1) for t in ctx.saved_tensors)
        half = grad.shape[-1] // 2
        grad_x = grad * cos  # out1 = x1 cos1 - x2 sin1, out2 = x2 cos2 + x1 sin2
        grad_x[..., :half].addcmul_(grad[..., half:], sin[..., half:])
        grad_x[..., half:].addcmul_(grad[..., :half], sin[..., :half], value=-1)
        return grad_x, None, None


def _normed_linear_backward(
    grad: torch.Tensor, x: torch.Tensor, norm_weight: torch.Tensor | None, eps: float,
    weight: torch.Tensor, adapters: list[tuple[int, int, float]], lora: Sequence[torch.Tensor],
    needs_x: bool, needs_norm: bool, needs_weight: bool, needs_bias: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None,
           torch.Tensor | None, list[torch.Tensor | None]]:
    """Gradients of linear(rms_norm(x)) (the norm recomputed; None: no norm) with respect
    to x, the norm weight, W, b and the LoRA pairs."""
    if norm_weight is None:
        grad_x, grad_weight, grad_bias, grad_lora = _linear_backward(
            grad, x, weight, adapters, lora, (needs_x, needs_weight, needs_bias))
        return grad_x, None, grad_weight, grad_bias, grad_lora
    # The norm again: h = w * x / rms(x), with rms(x) = sqrt(mean(x^2) + eps).
    inv_rms = torch.linalg.vecdot(x, x).div_(x.shape[-1]).add_(eps).rsqrt_().unsqueeze(-1)
    normed = x * inv_rms
    grad_h, grad_weight, grad_bias, grad_lora = _linear_backward(
        grad, normed * norm_weight, weight, adapters, lora,
        (needs_x or needs_norm, needs_weight, needs_bias))
    grad_x = grad_norm = None
    if grad_h is not None and needs_norm:
        grad_norm = (grad_h * normed).sum(dim=tuple(range(grad_h.dim() - 1)))
    if grad_h is not None and needs_x:
        # d/dx of w * x / rms(x): (a - normed * mean(a * normed)) / rms(x), a = w * grad_h.
        # By hand: one pass where autograd through F.rms_norm makes several (BENCHMARKS.md).
        grad_x = grad_h * norm_weight
        mean = torch.linalg.vecdot(grad_x, normed).div_(x.shape[-1]).unsqueeze(-1)
        grad_x.addcmul_(normed, mean, value=-1).mul_(inv_rms)
    return grad_x, grad_norm, grad_weight, grad_bias, grad_lora


def _linear_backward(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
    adapters: list[tuple[int, int, float]], lora: Sequence[torch.Tensor],
    needs: Sequence[bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None,
           list[torch.Tensor | None]]:
    """Gradients of x @ W^T + b + LoRA with respect to x, W, b (as `needs` asks) and the
    adapters' (A, B) pairs."""
    flat_grad = grad.reshape(-1, grad.shape[-1])  # (rows, out)
    flat_x = x.reshape(-1, x.shape[-1])  # (rows, in)
    grad_x = flat_grad @ weight if needs[0] else None
    grad_weight = flat_grad.T @ flat_x if needs[1] else None
    grad_bias = flat_grad.sum(dim=0) if needs[2] else None
    grad_lora: list[torch.Tensor | None] = []
    for (first, last, scale), a, b in zip(adapters, lora[::2], lora[1::2], strict=True):
        grad_out = flat_grad[:, first:last]  # (rows, out_m)
        grad_low = grad_out @ b  # (rows, r): the gradient at A's output, unscaled
        grad_lora.append(grad_low.T @ flat_x * scale if a.requires_grad else None)
        grad_lora.append(grad_out.T @ (flat_x @ a.T) * scale if b.requires_grad else None)
        if grad_x is not None:
            grad_x.addmm_(grad_low, a, alpha=scale)
    if grad_x is not None:
        grad_x = grad_x.view_as(x)
    return grad_x, grad_weight, grad_bias, grad_lora


def replay_supported(model: CausalLM, num_iterations: int, micro_batches: int,
                     autocast_dtype: torch.dtype | None) -> bool:
    """Whether an update may take its forward from the rollout's tape: the weights must
    not change between the two (one iteration, one micro-batch) and the update's forward
    must compute what the rollout's did (no autocast, no dropout, no merged adapters)."""
    if num_iterations != 1 or micro_batches != 1 or autocast_dtype is not None:
        return False
    base = unwrap_peft(model)
    if getattr(base.config, "attention_dropout", 0.0):
        return False
    module: Any
    for module in model.modules():
        if is_lora_layer(module):
            if module.merged or any(isinstance(d, torch.nn.Dropout) and d.p > 0
                                    for d in module.lora_dropout.values()):
                return False
            if any(b.bias is not None for b in module.lora_B.values()):
                return False
    return True


def tape_logprobs(
    model: CausalLM, tapes: Sequence[ForwardTape], batch: TokenBatch, temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(N, C) log-probs (and entropy) of `batch`'s completions from the tapes of the
    rollout that sampled them (decode chunks, rows in order); None when the tapes do not
    hold exactly these rows and tokens, so the caller runs the ordinary forward. The
    tapes are used up: a tape is only valid for the weights that recorded it."""
    c = batch.completion_length
    targets = batch.input_ids[:, -c:]
    mask = batch.completion_mask.bool()
    for tape in tapes:
        tape.check_alive("replay the tape")
    if sum(t.input_ids.shape[0] for t in tapes) != targets.shape[0]:
        return None
    spans, start = [], 0
    for tape in tapes:
        rows = slice(start, start + tape.input_ids.shape[0])
        start = rows.stop
        columns = min(c, tape.steps)
        fed = tape.input_ids[:, tape.prompt_length:]  # completion tokens 0..steps-2
        shared = min(columns, fed.shape[1])
        if bool(mask[rows, columns:].any()) or not bool(
            ((fed[:, :shared] == targets[rows, :shared]) | ~mask[rows, :shared]).all()
        ):
            return None
        spans.append((rows, columns))
    logps, entropies = [], []
    for tape, (rows, columns) in zip(tapes, spans, strict=True):
        logp, entropy = replay_logprobs(model, tape, targets[rows, :columns], temperature,
                                        with_entropy)
        logps.append(F.pad(logp, (0, c - columns)))
        if entropy is not None:
            entropies.append(F.pad(entropy, (0, c - columns)))
    return torch.cat(logps), torch.cat(entropies) if with_entropy else None


def recorded_entropy(tapes: Sequence[ForwardTape], rows: torch.Tensor, mask: torch.Tensor,
                     temperature: float) -> float:
    """The policy entropy summed over the `mask`ed (N, C) completion positions of batch
    `rows`, read from the tapes' recorded logits, which are used up for those rows (cut
    them away with `keep_tape_rows` next)."""
    for tape in tapes:
        tape.check_alive("read the recorded entropy")
    total = 0.0
    for tape, local, batch_rows in _rows_by_tape(tapes, rows):
        columns = min(mask.shape[1], tape.steps)
        for row, batch_row in zip(local.tolist(), batch_rows.tolist(), strict=True):
            logits = tape.logits[row : row + 1, :columns]
            if temperature != 1.0:
                logits.div_(temperature)
            targets = torch.zeros(logits.shape[:2], dtype=torch.long, device=logits.device)
            entropy = probs_into(logits, logits, targets, with_entropy=True)[1]
            total += float((entropy[0] * mask[batch_row, :columns]).sum())
    return total


def keep_tape_rows(tapes: Sequence[ForwardTape], rows: torch.Tensor) -> list[ForwardTape]:
    """The tapes cut down to batch `rows` (ascending), in place (`ForwardTape.keep_rows`);
    a tape left without rows is dropped."""
    return [tape.keep_rows(local) for tape, local, _ in _rows_by_tape(tapes, rows)
            if len(local)]


def _rows_by_tape(tapes: Sequence[ForwardTape], rows: torch.Tensor
                  ) -> list[tuple[ForwardTape, torch.Tensor, torch.Tensor]]:
    """(tape, its local row indices, the batch rows they are) for batch `rows`: the tapes
    hold consecutive row ranges of the batch, in order."""
    out, start = [], 0
    for tape in tapes:
        end = start + tape.input_ids.shape[0]
        batch_rows = rows[(rows >= start) & (rows < end)]
        out.append((tape, batch_rows - start, batch_rows))
        start = end
    return out


def replay_logprobs(
    model: CausalLM, tape: ForwardTape, targets: torch.Tensor, temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:  # (R, C), (R, C) or None
    """log p(targets) at the first C completion positions of one tape, differentiable
    with respect to the model's trainable weights. The tape is used up (emptied).

    Prompts run once per distinct prompt, as in the decode's prefill: GRPO repeats each
    one group_size times, and the repeats' gradients meet (summed) at its keys and values.
    """
    tape.use("replay the tape")
    base = unwrap_peft(model)
    inner, eps = base.model, base.config.rms_norm_eps
    heads, kv_heads, head_dim = attention_shape(base.config)
    if len(tape.layers) != len(inner.layers):
        raise ValueError(f"the tape has {len(tape.layers)} layers, the model "
                         f"{len(inner.layers)}")
    prompt = tape.prompt_length
    first, copies = distinct_rows(torch.cat([tape.input_ids[:, :prompt],
                                             tape.key_valid[:, :prompt].long()], dim=1))
    parts = [_Part(first, slice(0, prompt)),  # the distinct prompts
             _Part(slice(None), slice(prompt, tape.length))]  # every row's completion
    prompt_keys = tape.key_valid[first, :prompt]
    masks = [None if bool(prompt_keys.all()) else prompt_mask(prompt_keys),  # None: causal
             _completion_mask(tape.key_valid, prompt)]
    for part in parts:
        part.x = F.embedding(tape.input_ids[part.rows, part.columns], inner.embed_tokens.weight)
        part.rotary = inner.rotary_emb(part.x, tape.positions[part.rows, part.columns])
    for layer in inner.layers:
        record = tape.layers.pop(0)
        attn, mlp = layer.self_attn, layer.mlp
        attended = []
        for part in parts:
            rows, length = part.x.shape[:2]
            qkv = _projection(part.x, [attn.q_proj, attn.k_proj, attn.v_proj],
                              part.of(record.qkv), layer.input_layernorm.weight, eps)
            qkv = qkv.view(rows, length, heads + 2 * kv_heads, head_dim)
            q, k, v = qkv.split([heads, kv_heads, kv_heads], dim=2)
            if getattr(attn, "q_norm", None) is not None:
                q = F.rms_norm(q, q.shape[-1:], attn.q_norm.weight, eps)
                k = F.rms_norm(k, k.shape[-1:], attn.k_norm.weight, eps)
            q, k = (Rotary.apply(t.transpose(1, 2), *part.rotary) for t in (q, k))
            attended.append((q, k, v.transpose(1, 2)))
        (q_p, k_p, v_p), (q_c, k_c, v_c) = attended
        keys = torch.cat([copied_rows(k_p, copies), k_c], dim=2)  # prompt keys, shared by repeats
        values = torch.cat([copied_rows(v_p, copies), v_c], dim=2)
        outs = [
            F.scaled_dot_product_attention(q_p, k_p, v_p, attn_mask=masks[0],
                                           is_causal=masks[0] is None, scale=attn.scaling,
                                           enable_gqa=kv_heads != heads),
            F.scaled_dot_product_attention(q_c, keys, values, attn_mask=masks[1],
                                           scale=attn.scaling, enable_gqa=kv_heads != heads),
        ]
        for part, out in zip(parts, outs, strict=True):
            rows, length = part.x.shape[:2]
            out = out.transpose(1, 2).reshape(rows, length, heads * head_dim)
            part.x = part.x + _projection(out, [attn.o_proj], part.of(record.out))
            gate_up = _projection(part.x, [mlp.gate_proj, mlp.up_proj], part.of(
                record.gate_up), layer.post_attention_layernorm.weight, eps)
            part.x = part.x + _projection(SwiGLU.apply(gate_up), [mlp.down_proj],
                                          part.of(record.down))
    columns = targets.shape[1]  # the last prompt position predicts completion token 0
    last = torch.cat([copied_rows(parts[0].x[:, -1:], copies), parts[1].x[:, : columns - 1]], 1)
    recorded_logits, tape.logits = tape.logits[:, :columns], tape.logits.new_empty(0)
    weight, bias, adapters, lora = _linear_parts([base.lm_head])
    logp, entropy = RecordedLogProbs.apply(last, inner.norm.weight, eps, weight, bias,
                                           recorded_logits, targets, temperature,
                                           with_entropy, adapters, *lora)
    return logp, entropy if with_entropy else None


@dataclass
class _Part:
    """Tape rows x columns run as one batch: the distinct prompts, or the completions."""

    rows: torch.Tensor | slice
    columns: slice
    x: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # (rows, columns, hidden)
    rotary: tuple[torch.Tensor, torch.Tensor] = (torch.empty(0), torch.empty(0))

    def of(self, recorded: torch.Tensor) -> torch.Tensor:
        return recorded[self.rows, self.columns]


def _completion_mask(key_valid: torch.Tensor, prompt: int) -> torch.Tensor:
    """(R, 1, C, L) bool: completion query i sees the valid keys up to its own position."""
    length = key_valid.shape[1]
    keys = torch.arange(length, device=key_valid.device)
    queries = torch.arange(prompt, length, device=key_valid.device)
    return (key_valid[:, None, :] & (keys[None, :] <= queries[:, None]))[:, None]


def _projection(x: torch.Tensor, modules: list[Any], recorded: torch.Tensor,
                norm_weight: torch.Tensor | None = None, eps: float = 0.0) -> torch.Tensor:
    """The recorded output of the concatenated linear `modules` applied to rms_norm(x)
    (or x without `norm_weight`), with the gradient of x and of the live weights (norm,
    base weights and any active LoRA adapters)."""
    weight, bias, adapters, lora = _linear_parts(modules)
    return RecordedLinear.apply(x, norm_weight, eps, weight, bias, recorded, adapters, *lora)


def _linear_parts(modules: list[Any]) -> tuple[
        torch.Tensor, torch.Tensor | None, list[tuple[int, int, float]], list[torch.Tensor]]:
    """The concatenated base weight and bias of `modules`, and their active LoRA adapters
    as (first output row, last output row, scale) with the (A, B) weights, in order."""
    plain = [m.base_layer if is_lora_layer(m) else m for m in modules]
    weight = plain[0].weight if len(plain) == 1 else torch.cat([m.weight for m in plain])
    adapters: list[tuple[int, int, float]] = []
    lora: list[torch.Tensor] = []
    first = 0
    for module, layer in zip(modules, plain, strict=True):
        last = first + layer.weight.shape[0]
        if is_lora_layer(module) and not module.disable_adapters:
            for name in module.active_adapters:
                if name in module.lora_A:
                    adapters.append((first, last, float(module.scaling[name])))
                    lora += [module.lora_A[name].weight, module.lora_B[name].weight]
        first = last
    return weight, joined_bias(modules), adapters, lora
