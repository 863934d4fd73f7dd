"""Whole tool episodes with the KV cache kept between turns give the episodes that
re-prefilling every turn gives, token for token, on a tiny model that calls tools.

The tiny model is taught (a few dozen Adam steps on three conversations) to answer one
question directly, to call the tool once, or twice, before answering; the tool is a real
loopback HTTP server. The episodes so end after 1, 2 and 3 model turns, with prompts and
tool outputs of different lengths.
"""

from __future__ import annotations

import json

import pytest
import torch

from json_server import JsonServer, Reply
from openrft.rollout.engine import GenerationParams
from openrft.rollout.episodes import EpisodeRunner
from openrft.rollout.hf import HFRolloutEngine
from openrft.rollout.tools import ToolExecutor, ToolServer

TEMPLATE = (
    "{% if tools %}<|system|>tools<|eos|>{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'tool' %}<|user|>[tool] {{ m['content'] }}<|eos|>"
    "{% else %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|eos|>' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TOOLS = [{"type": "function", "function": {"name": "lookup"}}]
CALL = '<tool_call>{"name": "lookup", "arguments": {"q": "%s"}}</tool_call>'
ANSWERS = {"two": "red", "x": "blue", "y": "green"}  # the tool's
CONVERSATIONS = {  # question -> (assistant text | tool output) turns
    "one": ["gene one"],
    "two": [CALL % "two", "red", "gene red"],
    "three": [CALL % "x", "blue", CALL % "y", "green", "done green"],
}


def question(key: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"which gene for {key}"}]


@pytest.fixture
def tool_model(tiny_model):
    model, tok = tiny_model
    tok.chat_template = TEMPLATE
    texts = []
    for key, turns in CONVERSATIONS.items():
        messages = question(key) + [
            {"role": "assistant" if i % 2 == 0 else "tool", "content": text}
            for i, text in enumerate(turns)]
        texts.append(tok.apply_chat_template(messages, tools=TOOLS, tokenize=False))
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(60):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), tok


def episodes(model, tok, reuse_cache: bool) -> tuple[list, int]:
    def answer(request):
        return Reply({"output": ANSWERS.get(json.loads(request.body["arguments"])["q"], "?")})

    with JsonServer(answer) as server:
        executor = ToolExecutor([ToolServer(name="lookup", server_url=server.url("/t"))])
        runner = EpisodeRunner(HFRolloutEngine(model, tok), tok, executor, 3,
                               reuse_cache=reuse_cache)
        samples = runner.generate([question(k) for k in CONVERSATIONS], [TOOLS] * 3, 2,
                                  GenerationParams(max_tokens=64, temperature=0.0))
        runner.close()
    return samples, len(server.requests)


@pytest.mark.slow
def test_episodes_with_the_kept_cache_are_the_re_prefilled_episodes(tool_model):
    model, tok = tool_model
    expected, expected_calls = episodes(model, tok, reuse_cache=False)
    got, calls = episodes(model, tok, reuse_cache=True)
    turns = [sum(m["role"] == "assistant" for m in s.episode) for s in expected]
    assert sorted(set(turns)) == [1, 2, 3]  # episodes end at different turns
    assert calls == expected_calls == 2 * 3  # 0 + 1 + 2 calls, two samples each
    for want, have in zip(expected, got, strict=True):
        assert have.completion_ids == want.completion_ids
        assert have.completion_mask == want.completion_mask
        assert [(m["role"], m["content"]) for m in have.episode] == [
            (m["role"], m["content"]) for m in want.episode]  # call ids are fresh uuids
        assert have.output_text == want.output_text
        assert have.completion_logprobs == pytest.approx(want.completion_logprobs, abs=1e-4)
