"""Supervised fine-tuning: `train_supervised(model, rows, output_dir)` (chat or plain text)."""

from openrft.sft.trainer import SFTSettings, train_supervised

__all__ = ["SFTSettings", "train_supervised"]
