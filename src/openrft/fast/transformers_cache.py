"""A KV cache that grows in place, for models the hand-written Llama decode does not cover.

transformers' DynamicCache grows by `torch.cat`, which copies the whole cache at every
step: O(T^2) memory traffic, most of the decode time of a long completion (BENCHMARKS.md,
"Fast-path micro-measurements"). `PreallocatingForward` is the plain
`TransformersForward` with the prefill's cache layers moved into buffers sized for the
whole completion. It subclasses a transformers internal (`DynamicLayer`), so it is used
only where `probes` confirm the layer still works as assumed.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from openrft.rollout.decode import TransformersForward


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys/values are views into a buffer with room for `capacity`
    positions: `update` writes the new columns in place instead of re-concatenating the
    whole cache. Past capacity it doubles the buffer, so it never fails."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        super().__init__()
        self.device, self.is_initialized = keys.device, True
        self.length = 0
        self._keys = keys.new_empty((*keys.shape[:-2], capacity, keys.shape[-1]))
        self._values = values.new_empty((*values.shape[:-2], capacity, values.shape[-1]))
        self.update(keys, values)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[-2]:
            self._keys = _grown(self._keys, end, self.length)
            self._values = _grown(self._values, end, self.length)
        self._keys[..., self.length:end, :] = key_states
        self._values[..., self.length:end, :] = value_states
        self.length = end
        self.keys, self.values = self._keys[..., :end, :], self._values[..., :end, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows `indices` of the buffers (DynamicLayer's would select the views only,
        and the next `update` would bring the dropped rows back)."""
        self._keys, self._values = self._keys[indices], self._values[indices]
        self.keys = self._keys[..., : self.length, :]
        self.values = self._values[..., : self.length, :]


def _grown(buffer: torch.Tensor, needed: int, used: int) -> torch.Tensor:
    bigger = buffer.new_empty((*buffer.shape[:-2], max(needed, 2 * buffer.shape[-2]),
                               buffer.shape[-1]))
    bigger[..., :used, :] = buffer[..., :used, :]
    return bigger


def preallocate_cache(cache: Any, extra: int) -> None:
    """Swap each plain DynamicLayer of `cache` (filled by the prefill) for a
    PreallocatedLayer with room for `extra` more positions. Other layer kinds (sliding
    windows, linear attention, quantized) and legacy tuple caches are left as they are."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        return
    for index, layer in enumerate(layers):
        keys, values = layer.keys, layer.values
        if (type(layer) is DynamicLayer and layer.is_initialized and keys is not None
                and values is not None and keys.numel() > 0):
            layers[index] = PreallocatedLayer(keys, values, keys.shape[-2] + extra)


class PreallocatingForward(TransformersForward):
    """The model's own forward, its prefill's cache moved into preallocated layers."""

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor, extra: int) -> torch.Tensor:
        logits = super().prefill(input_ids, attention_mask, positions, extra)
        preallocate_cache(self.cache, extra)
        return logits
