"""The real pretrained model through the service (slow, still run in CI): a job naming an
OpenAI model that the server aliases to SmolLM2-135M-Instruct trains a few LoRA RFT steps,
records which model trained, and its `ft:` model answers chat."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NAME = "smollm2-135m-instruct"


def test_lora_rft_job_under_an_openai_name_then_ft_chat(smollm2_dir: Path, make_server) -> None:
    from openrft.service.worker import Worker

    live = make_server(model_aliases={"o4-mini-2025-04-16": NAME})
    client = live.client(live.key("alpha"))
    rows = [{"messages": [{"role": "user", "content": f"What is {a} + {a}? Number only."}],
             "answer": str(2 * a)} for a in (2, 3)]
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    file_id = client.files.create(file=("t.jsonl", io.BytesIO(content)),
                                  purpose="fine-tune").id
    grader = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
              "reference": "{{ item.answer }}", "operation": "like"}
    job = client.fine_tuning.jobs.create(
        model="o4-mini-2025-04-16", training_file=file_id, suffix="add", seed=1,
        method={"type": "reinforcement", "reinforcement": {"grader": grader,
                "hyperparameters": {"n_epochs": 2, "batch_size": 2}}},
        extra_body={"expert": {"group_size": 2, "max_tokens": 6, "finetune": "lora",
                               "base_learning_rate": 2e-4}})
    assert Worker(live.settings).run_once() is True
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    assert done.model == "o4-mini-2025-04-16"
    assert done.fine_tuned_model.startswith(f"ft:{NAME}:alpha:add:")
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert f"Base model: {NAME} (requested as o4-mini-2025-04-16)" in [e.message
                                                                     for e in events]
    assert sum(e.type == "metrics" for e in events) == 2  # two LoRA RFT steps
    reply = client.chat.completions.create(
        model=done.fine_tuned_model, max_tokens=8, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert reply.model == done.fine_tuned_model
    assert "Paris" in reply.choices[0].message.content  # still the pretrained model
