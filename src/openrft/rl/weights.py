"""The trainable weights of a policy as a plain mapping: what an update changes, sent to
rollout copies (Ray actors, the async mode's sampling copy) and swapped in to recompute
the log-probs of the policy version that sampled a batch (async mode, rl/pipeline.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

Weights = dict[str, torch.Tensor]


def trainable_parameters(model: torch.nn.Module) -> Weights:
    """The parameters an update changes, by name, where they live (not copies)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def cpu_copies(weights: Weights) -> Weights:
    """Detached CPU copies of `weights` (what survives later in-place updates)."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in weights.items()}


def trainable_weights(model: torch.nn.Module) -> Weights:
    """The tensors an update changes, on CPU, by parameter name."""
    return cpu_copies(trainable_parameters(model))


def load_weights(model: torch.nn.Module, weights: Weights) -> None:
    """Copy `weights` (from `trainable_weights`) into `model` in place."""
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise ValueError(f"weights do not match the rollout copy: {unknown[:3]}")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)


@contextmanager
def swapped_weights(model: torch.nn.Module, weights: Weights) -> Iterator[None]:
    """`model` with `weights` loaded for the duration of the block, then its own again
    (in place: the optimizer keeps holding the same parameters)."""
    own = trainable_weights(model)
    load_weights(model, weights)
    try:
        yield
    finally:
        load_weights(model, own)
