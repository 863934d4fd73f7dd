"""Evaluation: the training path without the update (mean reward, pass@k, top@k)."""
