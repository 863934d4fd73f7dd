"""Every private torch op and transformers internal the fast path relies on, each behind
a probe that runs it once on a small input against plain ops.

Why: private ops (`torch.ops.mkldnn._reorder_linear_weight`,
`aten._scaled_dot_product_flash_attention_for_cpu`, `aten.silu_backward`) and
transformers' `DynamicLayer` can change or vanish in any release. A probe that fails
makes its user fall back to public ops (the same results up to rounding), never crash.
Each probe runs once per process, in float32 whatever autocast the first caller runs
under (`_probe`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

_PROBE_ERRORS = (AttributeError, ImportError, RuntimeError, NotImplementedError, TypeError)


def _probe(check: Callable[[], bool]) -> Callable[[], bool]:
    """`check` run once, outside autocast and autograd; False when it raises."""

    @functools.cache
    @functools.wraps(check)
    def probe() -> bool:
        try:
            with torch.autocast("cpu", enabled=False), torch.no_grad():
                return check()
        except _PROBE_ERRORS:
            return False

    return probe


@_probe
def onednn_linear() -> bool:
    """Whether this torch build runs prepacked oneDNN linears correctly (x86 builds do;
    the ops are inductor's: `mkldnn._reorder_linear_weight`, `mkldnn._linear_pointwise`)."""
    if not torch.backends.mkldnn.is_available():
        return False
    with torch.inference_mode():
        weight = torch.linspace(-1, 1, 24).view(6, 4)
        x = torch.linspace(0, 1, 12).view(3, 4)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 3)
        out = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    return bool(torch.allclose(out, x @ weight.T, atol=1e-5))


@_probe
def cpu_flash_attention_with_lse() -> bool:
    """Whether `aten._scaled_dot_product_flash_attention_for_cpu` exists and returns
    (attention, log-sum-exp) as the shared-prompt cache reads them."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 8, generator=generator) for n in (3, 5, 5))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, attn_mask=None, scale=0.5)
    scores = q @ k.transpose(-1, -2) * 0.5
    return bool(torch.allclose(out, torch.softmax(scores, -1) @ v, atol=1e-5)
                and torch.allclose(lse.reshape(scores.shape[:-1]),
                                   torch.logsumexp(scores, -1), atol=1e-5))


@_probe
def silu_backward_op() -> bool:
    """Whether `aten.silu_backward.grad_input` computes silu's derivative in place."""
    x = torch.linspace(-3, 3, 7)
    grad = torch.linspace(0.5, 1.5, 7)
    out = grad.clone()
    torch.ops.aten.silu_backward.grad_input(out, x, grad_input=out)
    sigmoid = torch.sigmoid(x)
    return bool(torch.allclose(out, grad * sigmoid * (1 + x * (1 - sigmoid)), atol=1e-6))


def silu_backward_into(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """grad * silu'(x), written over `grad`: torch's own kernel where the probe passes,
    else the derivative sigmoid(x) * (1 + x * (1 - sigmoid(x))) from public ops."""
    if silu_backward_op():
        return torch.ops.aten.silu_backward.grad_input(grad, x, grad_input=grad)
    sigmoid = torch.sigmoid(x)
    return grad.mul_(sigmoid * (1 + x * (1 - sigmoid)))


@_probe
def dynamic_layer_in_place() -> bool:
    """Whether transformers' `DynamicLayer` still has the fields the preallocated cache
    layer (fast/transformers_cache.py) overrides: keys, values, is_initialized, update."""
    from transformers.cache_utils import DynamicLayer

    from openrft.fast.transformers_cache import PreallocatedLayer

    chunks = [torch.arange(24.0).view(1, 2, 3, 4), torch.ones(1, 2, 1, 4)]
    grown, plain = PreallocatedLayer(chunks[0], chunks[0], capacity=3), DynamicLayer()
    plain.update(chunks[0], chunks[0])
    keys, _ = grown.update(chunks[1], chunks[1])
    expected, _ = plain.update(chunks[1], chunks[1])
    return bool(torch.equal(keys, expected) and grown.is_initialized
                and grown.get_seq_length() == plain.get_seq_length() == 4)

