"""The real pretrained model (slow, still run in CI): the catalog's SmolLM2-135M-Instruct,
pulled once per machine into the default models directory, is the published model and
answers a factual question right when evaluated by its catalog name. The service side
(LoRA RFT under an alias, then ft: chat) is tests/service/test_smollm2_service_slow.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrft.models.catalog import MARKER_FILE

pytestmark = pytest.mark.slow

NAME = "smollm2-135m-instruct"


def test_pulled_smollm2_is_the_published_model(smollm2_dir: Path) -> None:
    config = json.loads((smollm2_dir / "config.json").read_text())
    # The SmolLM2-135M architecture, as published by HuggingFaceTB.
    assert config["model_type"] == "llama"
    assert (config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"]) == (30, 9, 3)
    assert config["vocab_size"] == 49152 and config["tie_word_embeddings"] is True
    assert "quantization_config" not in config  # a plain float32 HF directory
    assert (smollm2_dir / "chat_template.jinja").is_file()
    marker = json.loads((smollm2_dir / MARKER_FILE).read_text())
    assert marker["licence"] == "Apache-2.0"
    assert marker["source_member_sha256"] == (
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")


def test_eval_by_catalog_name_answers_a_factual_question(smollm2_dir: Path) -> None:
    from openrft import evaluate
    from openrft.rollout.engine import GenerationParams

    rows = [{"messages": [{"role": "user", "content": "What is the capital of France?"}],
             "city": "Paris"}]
    grader = {"type": "string_check", "name": "city", "input": "{{ sample.output_text }}",
              "reference": "{{ item.city }}", "operation": "like"}
    report = evaluate(NAME, rows, grader, params=GenerationParams(max_tokens=10,
                                                                   temperature=0.0),
                      progress=False)
    assert report.rows[0].samples[0].output_text.startswith("The capital of France")
    assert report.mean_reward == 1.0
