"""Engine selection on a CPU machine (the GPU path is checked by the vLLM self-test)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from openrft.errors import InvalidInput, OpenRFTError
from openrft.rollout import factory
from openrft.rollout.hf import HFRolloutEngine


def test_auto_is_hf_without_gpu(tiny_model) -> None:
    assert factory.resolve_engine_kind("auto") == "hf"
    assert isinstance(factory.make_engine(*tiny_model), HFRolloutEngine)
    assert isinstance(factory.make_engine(*tiny_model, kind="hf"), HFRolloutEngine)


def test_auto_picks_vllm_only_with_gpu_and_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(factory, "vllm_available", lambda: False)
    assert factory.resolve_engine_kind("auto") == "hf"
    monkeypatch.setattr(factory, "vllm_available", lambda: True)
    assert factory.resolve_engine_kind("auto") == "vllm"


def test_vllm_without_vllm_is_a_clear_error(tiny_model, monkeypatch) -> None:
    monkeypatch.setattr(factory, "vllm_available", lambda: False)
    with pytest.raises(OpenRFTError, match="engine: vllm is not installed"):
        factory.make_engine(*tiny_model, kind="vllm")


def test_unknown_kind_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="engine: expected one of auto, hf, vllm"):
        factory.resolve_engine_kind("tgi")


def test_importing_rollout_imports_neither_vllm_nor_torch() -> None:
    code = "import sys, openrft.rollout; print('vllm' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
