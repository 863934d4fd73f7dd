"""Each private op the fast path uses is probed; where a probe fails the fast path falls
back to public ops and still computes the same thing."""

from __future__ import annotations

import torch

from llama_family import ARCHITECTURES
from openrft.fast import decode_forward, kv_cache, llama_decode, path, probes, replay
from openrft.rollout.decode import TransformersForward


def test_the_probes_pass_on_this_torch_and_transformers():
    """On the pinned x86 CPU build every private op works: a failure here means a
    dependency update silently moved the fast path onto its fallbacks."""
    assert probes.cpu_flash_attention_with_lse()
    assert probes.silu_backward_op()
    assert probes.dynamic_layer_in_place()
    assert probes.onednn_linear() == torch.backends.mkldnn.is_available()


def test_a_probe_first_run_under_autocast_still_checks_in_float32():
    """The first caller may be a bf16 rollout: the probe must not judge the kernel by
    bf16 rounding (and then fall back for the whole process)."""
    probes.cpu_flash_attention_with_lse.cache_clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert probes.cpu_flash_attention_with_lse()


def test_silu_backward_fallback_is_the_derivative(monkeypatch):
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)
    grad = torch.linspace(1, 2, 9, dtype=torch.float64)
    sigmoid = torch.sigmoid(x)  # silu'(x) = s + x s (1 - s), written out by hand
    expected = grad * (sigmoid + x * sigmoid * (1 - sigmoid))
    torch.testing.assert_close(probes.silu_backward_into(grad.clone(), x), expected)
    monkeypatch.setattr(probes, "silu_backward_op", lambda: False)
    torch.testing.assert_close(probes.silu_backward_into(grad.clone(), x), expected)


def test_swiglu_backward_without_the_private_op_matches_autograd(monkeypatch):
    monkeypatch.setattr(probes, "silu_backward_op", lambda: False)
    gate_up = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, 4, dtype=torch.float64)
    (replay.SwiGLU.apply(gate_up) * upstream).sum().backward()
    plain = gate_up.detach().clone().requires_grad_()
    gate, up = plain.chunk(2, dim=-1)
    (torch.nn.functional.silu(gate) * up * upstream).sum().backward()
    torch.testing.assert_close(gate_up.grad, plain.grad)


def test_attention_without_the_cpu_flash_kernel_is_the_same(monkeypatch):
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, n, 8, generator=generator) for n in (3, 6, 6))
    kernel = kv_cache._attention_with_lse(q, k, v, None, 0.4)
    monkeypatch.setattr(kv_cache, "cpu_flash_attention_with_lse", lambda: False)
    fallback = kv_cache._attention_with_lse(q, k, v, None, 0.4)
    for got, expected in zip(fallback, kernel, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_without_onednn_the_decode_uses_plain_linears(monkeypatch):
    monkeypatch.setattr(llama_decode, "onednn_linear", lambda: False)
    linear = llama_decode.Linear(torch.randn(6, 4), torch.randn(6))
    linear.pack(rows=3)
    assert linear.packed is None
    x = torch.randn(3, 4)
    torch.testing.assert_close(linear(x), torch.nn.functional.linear(x, linear.weight,
                                                                     linear.bias))


def test_without_the_cache_layer_probe_other_models_decode_plainly(monkeypatch):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4))
    monkeypatch.setattr(path, "dynamic_layer_in_place", lambda: False)
    assert type(decode_forward(model)) is TransformersForward
    assert isinstance(decode_forward(ARCHITECTURES["llama"]()), llama_decode.LlamaDecodeForward)
