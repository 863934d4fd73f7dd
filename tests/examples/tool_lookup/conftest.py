"""Shared by the tool_lookup tests."""

from __future__ import annotations

import pytest

# SmolLM2-Instruct's chat template (ChatML with a default system turn), copied from the
# model's chat_template.jinja: the rows must render as the real model sees them.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture
def smollm2_template() -> str:
    return SMOLLM2_TEMPLATE
