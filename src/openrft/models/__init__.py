"""Models: Hugging Face causal LMs by path or hub id, LoRA wrapping, local tiny models."""

from openrft.models.load import LoadedModel, LoraSettings, load_model
from openrft.models.tiny import build_tiny_model, default_tiny_model_dir

__all__ = [
    "LoadedModel",
    "LoraSettings",
    "build_tiny_model",
    "default_tiny_model_dir",
    "load_model",
]
