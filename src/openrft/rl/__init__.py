"""Reinforcement learning: config, advantages and losses (pure), the training loop."""
