"""What the hand-written forwards need to know of peft's LoRA layers: the model inside a
wrapper, which modules are LoRA layers, and the weight and bias a layer applies."""

from __future__ import annotations

from typing import Any

import torch


def unwrap_peft(model: Any) -> Any:
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_lora_layer(module: Any) -> bool:
    """A peft LoRA layer wrapping a base layer."""
    return hasattr(module, "base_layer") and hasattr(module, "lora_A")


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


def bias_of(module: Any) -> torch.Tensor | None:
    """The bias of a plain or LoRA linear layer (LoRA adds none of its own here)."""
    return module.base_layer.bias if is_lora_layer(module) else module.bias


def joined_bias(modules: list[Any]) -> torch.Tensor | None:
    """The biases of linear `modules` (plain or LoRA) in the order of their concatenated
    outputs, zeros for a module without one; None when none has a bias."""
    biases = [bias_of(m) for m in modules]
    if all(b is None for b in biases):
        return None
    if len(biases) == 1:
        return biases[0]
    weights = [m.base_layer.weight if is_lora_layer(m) else m.weight for m in modules]
    return torch.cat([b if b is not None else w.new_zeros(w.shape[0])
                      for b, w in zip(biases, weights, strict=True)])


def plain_or_lora(module: Any) -> bool:
    """A plain nn.Linear, or a LoRA layer over one (no DoRA, no embedding adapters)."""
    if isinstance(module, torch.nn.Linear) and not is_lora_layer(module):
        return True
    if not is_lora_layer(module) or not isinstance(module.base_layer, torch.nn.Linear):
        return False
    if any(getattr(module, "use_dora", {}).values()):
        return False
    return not getattr(module, "lora_embedding_A", None)
