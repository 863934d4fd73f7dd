"""Models: Hugging Face causal LMs by path or hub id, LoRA wrapping, local tiny models."""
