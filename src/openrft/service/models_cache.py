"""Models loaded for chat completions, kept in a small LRU cache (loaded on first use).

Nothing is loaded at import or boot: the first request for a model loads it through
`openrft.models.load.load_model` (local dir, adapter dir or cached hub id), later ones
reuse it. Generation on one model is serialised by a lock (HF models are not safe to
generate from concurrently).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServedModel:
    """A loaded model with its rollout engine; hold `lock` while generating."""

    name: str
    engine: Any  # openrft.rollout.hf.HFRolloutEngine
    tokenizer: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._models: OrderedDict[str, ServedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> ServedModel:
        """The served model for a `load_model` path, loading (and evicting) as needed."""
        with self._lock:
            if path in self._models:
                self._models.move_to_end(path)
                return self._models[path]
            served = _load(path)
            self._models[path] = served
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return served


def _load(path: str) -> ServedModel:
    from openrft.models.load import load_model
    from openrft.rollout.hf import HFRolloutEngine

    loaded = load_model(path)
    return ServedModel(
        name=path, engine=HFRolloutEngine(loaded.model, loaded.tokenizer),
        tokenizer=loaded.tokenizer,
    )
