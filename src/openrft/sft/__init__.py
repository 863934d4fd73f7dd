"""Supervised fine-tuning: `train_supervised(model, rows, output_dir)` (chat or plain text)."""

from openrft.sft.trainer import SFTSettings, latest_checkpoint, train_supervised

__all__ = ["SFTSettings", "latest_checkpoint", "train_supervised"]
