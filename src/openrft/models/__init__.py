"""Models: the catalog (pull, cache, resolve by name), Hugging Face causal LMs by path or
hub id, LoRA wrapping, local tiny models."""

from openrft.models.catalog import CATALOG, ensure_model, models_dir, pull
from openrft.models.load import LoadedModel, LoraSettings, load_model
from openrft.models.tiny import build_tiny_model, default_tiny_model_dir

__all__ = [
    "CATALOG",
    "LoadedModel",
    "LoraSettings",
    "build_tiny_model",
    "default_tiny_model_dir",
    "ensure_model",
    "load_model",
    "models_dir",
    "pull",
]
