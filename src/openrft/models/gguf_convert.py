"""GGUF file -> Hugging Face directory (float32 safetensors, tokenizer, chat template).

transformers reads GGUF through the `gguf` package and dequantizes the weights; the
result saves as an ordinary HF directory once the GGUF quantizer is dropped (it only
describes the file that was read, not the float32 weights now in memory).
"""

from __future__ import annotations

from pathlib import Path


def gguf_to_hf_dir(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize `gguf_path` to float32 and save model + tokenizer into `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    directory, name = str(gguf_path.parent), gguf_path.name
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the caller shows one progress display for the pull
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name,
                                                     dtype=torch.float32)
        model.hf_quantizer = None  # type: ignore[assignment]  # torch.nn.Module typing
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
