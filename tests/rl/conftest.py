"""The toy RFT task (tests/rl_task.py) as fixtures for these tests."""

from rl_task import make_config, one_torch_thread, toy_files

__all__ = ["make_config", "one_torch_thread", "toy_files"]
