"""The fence: every speed trick of the training step, behind one switch.

Nothing outside this package imports from inside it; the rest of OpenRFT sees only
what this module exports: `FastPath`, the `rl.step.TrainingPath` that
`expert.fast_path: auto` selects (rl/policy_setup.py), and `decode_forward`, the
decode forward the HF engine uses by default. Both fall back to the plain pieces where a
model or a setting does not qualify, and every piece is tested against the plain path
(tests/fast/). Inside: llama_decode, kv_cache, forward_tape (decode and its recording),
replay and fused_logprobs (the update's forward and backward), update (row skipping),
transformers_cache, peft_layers, and probes (private ops, each with a fallback).
"""

from openrft.fast.path import FastPath, decode_forward

__all__ = ["FastPath", "decode_forward"]
