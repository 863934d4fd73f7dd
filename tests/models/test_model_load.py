"""load_model: local dirs, adapter dirs, hub ids (offline), LoRA wrapping, tokenizer setup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from openrft.errors import InvalidInput, NotFound
from openrft.models.load import FALLBACK_CHAT_TEMPLATE, LoraSettings, load_model


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


def test_local_dir_loads_for_inference(tiny_model_dir: Path) -> None:
    loaded = load_model(tiny_model_dir)
    assert loaded.name == loaded.base_name == str(tiny_model_dir)
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"  # device="auto"
    assert not loaded.is_adapter and loaded.device.type == expected_device
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.tokenizer.pad_token_id is not None


def test_missing_local_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such local directory") as info:
        load_model(tmp_path / "nope")
    assert "\n" not in str(info.value)


def test_dir_without_config_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no config.json"):
        load_model(tmp_path)


def test_unreachable_hub_id_is_one_line_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotFound) as info:
        load_model("some-org/some-model-that-is-not-cached")
    message = str(info.value)
    assert message.startswith("model not found: some-org/some-model-that-is-not-cached (")
    assert "not a local directory and the hub is unreachable" in message
    assert "\n" not in message


def test_bad_dtype_is_invalid_input(tiny_model_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="dtype"):
        load_model(tiny_model_dir, dtype="float8")


def test_full_fine_tuning_makes_every_parameter_trainable(tiny_model_dir: Path) -> None:
    loaded = load_model(tiny_model_dir, trainable=True)
    assert all(p.requires_grad for p in loaded.model.parameters())
    assert not loaded.is_adapter


def test_lora_wrap_trains_only_adapter_weights(tiny_model_dir: Path) -> None:
    loaded = load_model(tiny_model_dir, lora=LoraSettings(rank=4, alpha=8))
    assert loaded.is_adapter
    trainable = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # all-linear: every attention and MLP projection of both layers, never the LM head
    wrapped = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("lm_head" in n for n in trainable)
    # rank 4 A (4 x in) and B (out x 4) per wrapped module
    config = loaded.model.config
    h, i, kv = config.hidden_size, config.intermediate_size, config.num_key_value_heads
    kv_dim = kv * (h // config.num_attention_heads)
    per_layer = sum(4 * (a + b) for a, b in [(h, h), (h, kv_dim), (h, kv_dim), (h, h),
                                            (h, i), (h, i), (i, h)])
    n_trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    assert n_trainable == per_layer * config.num_hidden_layers


def test_unknown_lora_target_is_invalid_input(tiny_model_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="lora.target_modules"):
        load_model(tiny_model_dir, lora=LoraSettings(target_modules=["no_such_proj"]))


def test_adapter_dir_round_trip_gives_identical_logits(tiny_model_dir: Path, tmp_path: Path):
    loaded = load_model(tiny_model_dir, lora=LoraSettings(rank=4, alpha=8))
    with torch.no_grad():  # LoRA B starts at zero; move it so the adapter changes the output
        for name, param in loaded.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    loaded.model.save_pretrained(tmp_path / "adapter")
    ids = loaded.tokenizer("What is 2 + 2?")["input_ids"]
    expected = _logits(loaded.model.eval(), ids)
    base = _logits(load_model(tiny_model_dir).model, ids)
    assert not torch.allclose(expected, base, atol=1e-3)

    reloaded = load_model(tmp_path / "adapter")
    assert reloaded.is_adapter and reloaded.base_name == str(tiny_model_dir)
    assert not any(p.requires_grad for p in reloaded.model.parameters())
    torch.testing.assert_close(_logits(reloaded.model, ids), expected, atol=1e-6, rtol=0)
    resumed = load_model(tmp_path / "adapter", trainable=True)
    names = [n for n, p in resumed.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)


def test_adapter_with_broken_config_is_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": ')
    with pytest.raises(InvalidInput, match="adapter_config.json:1"):
        load_model(tmp_path)


def test_missing_chat_template_gets_fallback(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "no_template"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "chat_template.jinja").unlink()
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_model(copy).tokenizer
    assert tokenizer.chat_template == FALLBACK_CHAT_TEMPLATE
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "system: Be brief.\n\nuser: Hi\n\nassistant: "
