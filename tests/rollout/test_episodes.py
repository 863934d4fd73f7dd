"""Multi-turn episodes: tool turns as the chat template renders them, masks, limits.

A scripted engine (real tokenizer, scripted model turns) makes the episodes
deterministic; the expected token sequence is the chat template's own rendering of the
whole conversation, written out by hand here.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from json_server import JsonServer, Reply
from openrft.remote_call import EndpointLimits
from openrft.rollout.engine import GenerationParams
from openrft.rollout.episodes import EpisodeRunner, episode_metrics, make_episode_runner
from openrft.rollout.tools import ToolExecutor, ToolServer

FAST = EndpointLimits(timeout_s=0.5, backoff_s=0.01, max_backoff_s=0.01)
CALL = '<tool_call>{"name": "lookup", "arguments": {"q": "fever"}}</tool_call>'
ROW_TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "genes of a phenotype",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
PARAMS = GenerationParams(max_tokens=64, temperature=1.0, seed=1)


class ScriptedEngine:
    """`decode_rows` answers each row with `script(decoded row)` followed by eos."""

    def __init__(self, tokenizer, script: Callable[[str], str]) -> None:
        self.tokenizer, self.script = tokenizer, script
        self.rows_seen: list[list[int]] = []

    def generator(self, seed):
        return None

    def decode_rows(self, rows, params, generator):
        turns = []
        for row in rows:
            self.rows_seen.append(row)
            reply = self.script(self.tokenizer.decode(row, skip_special_tokens=False))
            ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"]
            ids.append(self.tokenizer.eos_token_id)
            turns.append((ids, [-0.5] * len(ids), True))
        return turns


def call_then_answer(text: str) -> str:
    return "BRCA1 it is" if "<tool_response>" in text else CALL


@pytest.fixture
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def runner(tokenizer, script, server: JsonServer | None, steps: int = 4) -> EpisodeRunner:
    executor = None
    if server is not None:
        executor = ToolExecutor([ToolServer(name="lookup", server_url=server.url("/t"))],
                                limits=FAST)
    return EpisodeRunner(ScriptedEngine(tokenizer, script), tokenizer, executor, steps)


def test_episode_tokens_are_the_templates_rendering_and_only_model_tokens_are_masked_in(
        tokenizer):
    with JsonServer(lambda r: Reply({"output": "BRCA1"})) as server:
        run = runner(tokenizer, call_then_answer, server)
        samples = run.generate([[{"role": "user", "content": "genes for fever?"}]],
                               [ROW_TOOLS], 2, PARAMS)
        run.close()
    assert len(samples) == 2 and len(server.requests) == 2
    sample = samples[0]
    # The tiny template rejects role "tool": tool results become <tool_response> user turns,
    # and tools it ignores are described in a system message (SmolLM2's format).
    system = json.dumps([ROW_TOOLS[0]["function"]])
    expected = "<|bos|><|system|>You are an expert in composing functions."
    full = tokenizer.decode(sample.prompt_ids + sample.completion_ids, skip_special_tokens=False)
    assert full.startswith(expected) and f"<tools>{system}</tools>" in full
    tail = ("<|eos|><|user|>genes for fever?<|eos|><|assistant|>" + CALL
            + "<|eos|><|user|><tool_response>\nBRCA1\n</tool_response><|eos|><|assistant|>"
            + "BRCA1 it is<|eos|>")
    assert full.endswith(tail)
    first = tokenizer(CALL, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    last = tokenizer("BRCA1 it is", add_special_tokens=False)["input_ids"]
    last.append(tokenizer.eos_token_id)
    tool_part = len(sample.completion_ids) - len(first) - len(last)
    assert tool_part > 0
    assert sample.completion_mask == [1.0] * len(first) + [0.0] * tool_part + [1.0] * len(last)
    assert sample.completion_ids[: len(first)] == first  # the model's tokens, never re-tokenised
    assert sample.completion_ids[-len(last):] == last
    assert sample.completion_logprobs[len(first): len(first) + tool_part] == [0.0] * tool_part
    assert sample.output_text == "BRCA1 it is" and sample.discard_reason is None
    assert [t["function"]["name"] for t in sample.output_tools] == ["lookup"]
    assert [m["role"] for m in sample.episode] == ["assistant", "tool", "assistant"]
    assert sample.episode[1]["content"] == "BRCA1"
    # one trace id per episode, sent with its tool call
    sent = sorted(r.body["trace_id"] for r in server.requests)
    assert sent == sorted(s.trace_id for s in samples) and sent[0] != sent[1]
    assert sample.grader_view()["output_tools"] == sample.output_tools


def test_template_with_tools_and_tool_role_renders_natively(tokenizer):
    tokenizer.chat_template = (
        "{% if tools %}<|system|>TOOLS:{{ tools | tojson }}<|eos|>{% endif %}"
        "{% for m in messages %}"
        "{% if m['role'] == 'tool' %}<|user|>[tool {{ m['name'] }}] {{ m['content'] }}<|eos|>"
        "{% else %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|eos|>' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    with JsonServer(lambda r: Reply({"output": "BRCA1"})) as server:
        run = runner(tokenizer, lambda t: "done" if "[tool lookup]" in t else CALL, server)
        sample = run.generate([[{"role": "user", "content": "q"}]], [ROW_TOOLS], 1, PARAMS)[0]
        run.close()
    full = tokenizer.decode(sample.prompt_ids + sample.completion_ids, skip_special_tokens=False)
    assert full.endswith("<|user|>q<|eos|><|assistant|>" + CALL
                         + "<|eos|><|user|>[tool lookup] BRCA1<|eos|><|assistant|>done<|eos|>")
    assert "TOOLS:" in full and '"genes of a phenotype"' in full


def test_a_tool_5xx_storm_discards_the_rollout_with_its_reason(tokenizer):
    with JsonServer(lambda r: Reply(raw="down", status=503)) as server:
        run = runner(tokenizer, call_then_answer, server)
        sample = run.generate([[{"role": "user", "content": "q"}]], [ROW_TOOLS], 1, PARAMS)[0]
        run.close()
    assert len(server.requests) == 4
    assert sample.discard_reason.startswith("tool failed: lookup: HTTP 503")
    assert [m["role"] for m in sample.episode] == ["assistant"]
    metrics = episode_metrics([sample])
    assert metrics["discarded_rollouts"] == 1 and metrics["tool_errors"] == 1


def test_episodes_stop_at_max_episode_steps(tokenizer):
    with JsonServer(lambda r: Reply({"output": "again"})) as server:
        run = runner(tokenizer, lambda t: CALL, server, steps=3)
        sample = run.generate([[{"role": "user", "content": "q"}]], [ROW_TOOLS], 1, PARAMS)[0]
        run.close()
    assert len(server.requests) == 2  # the third turn's call is not executed
    assert [m["role"] for m in sample.episode] == ["assistant", "tool"] * 2 + ["assistant"]
    assert len(sample.output_tools) == 3
    metrics = episode_metrics([sample])
    assert metrics["tool_calls_per_rollout"] == 2 and metrics["tool_calls_per_rollout/lookup"] == 2
    assert metrics["episode_turns_mean"] == 3 and metrics["tool_errors"] == 0
    assert metrics["tool_tokens_per_call"] == sample.completion_mask.count(0.0) / 2


def test_bad_tool_answers_reach_the_model_as_errors(tokenizer):
    replies = iter([Reply(raw="<html>oops</html>", content_type="text/html"),
                    Reply({"detail": "nope"}, status=404)])
    with JsonServer(lambda r: next(replies)) as server:
        run = runner(tokenizer, lambda t: "ok" if t.count("tool_response>") >= 4 else CALL,
                     server)
        sample = run.generate([[{"role": "user", "content": "q"}]], [ROW_TOOLS], 1, PARAMS)[0]
        run.close()
    outputs = [json.loads(m["content"])["error"] for m in sample.episode if m["role"] == "tool"]
    assert "not JSON" in outputs[0] and outputs[1].startswith("HTTP 404")
    assert sample.output_text == "ok" and sample.discard_reason is None
    assert episode_metrics([sample])["tool_errors"] == 2


def test_row_tools_without_servers_are_parsed_not_executed(tokenizer):
    run = runner(tokenizer, lambda t: CALL, None)
    sample = run.generate([[{"role": "user", "content": "q"}]], [ROW_TOOLS], 1, PARAMS)[0]
    assert sample.output_tools[0]["function"] == {"name": "lookup",
                                                  "arguments": '{"q": "fever"}'}
    assert sample.completion_mask == [1.0] * len(sample.completion_ids)
    assert [m["role"] for m in sample.episode] == ["assistant"]


def test_no_runner_without_tools_and_hf_engine_required(tokenizer):
    assert make_episode_runner(object(), tokenizer, None, 1, rows_have_tools=False) is None
    # rows' tools on an engine without decode_rows (vLLM): plain sampling, as before
    assert make_episode_runner(object(), tokenizer, None, 1, rows_have_tools=True) is None
    from openrft.errors import InvalidInput

    servers = [{"name": "lookup", "server_url": "http://127.0.0.1:9/t"}]
    with pytest.raises(InvalidInput, match="hf engine"):
        make_episode_runner(object(), tokenizer, servers, 1, rows_have_tools=False)


def test_evaluate_runs_episodes_with_tool_servers(tokenizer):
    from openrft.eval.evaluate import evaluate

    engine = ScriptedEngine(tokenizer, call_then_answer)
    engine.tokenizer = tokenizer
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}], "answer": "BRCA1",
             "tools": ROW_TOOLS} for i in range(3)]
    grader = {"type": "string_check", "name": "found", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "operation": "like"}
    with JsonServer(lambda r: Reply({"output": "BRCA1"})) as server:
        report = evaluate(None, rows, grader, engine=engine, progress=False,
                          tools=[{"name": "lookup", "server_url": server.url("/t")}])
    assert len(server.requests) == 3 and report.mean_reward == 1.0
    uncalled = evaluate(None, rows, {**grader, "input": "{{sample.output_tools}}",
                                     "reference": "lookup"}, engine=engine, progress=False)
    assert uncalled.mean_reward == 1.0  # rows' tools alone: calls parsed, graded, not run


def test_decode_rows_matches_generate_on_the_tiny_model(tiny_model):
    from openrft.rollout.hf import HFRolloutEngine

    model, tok = tiny_model
    engine = HFRolloutEngine(model, tok)
    messages = [{"role": "user", "content": "what is two plus two"}]
    params = GenerationParams(max_tokens=6, temperature=1.0, seed=5)
    expected = engine.generate([messages, messages], 1, params)
    turns = engine.decode_rows([engine.render_prompt(messages)] * 2, params,
                               engine.generator(params.seed))
    assert [t[0] for t in turns] == [s.completion_ids for s in expected]
    assert [t[1] for t in turns] == [s.completion_logprobs for s in expected]
    # and through the runner (rows with tools; the random model calls none: one turn)
    run = EpisodeRunner(engine, tok, None, 1)
    sample = run.generate([messages], [ROW_TOOLS], 1, params)[0]
    assert sample.completion_mask == [1.0] * len(sample.completion_ids) > []
    assert sample.output_tools == []


def test_long_tool_output_is_cut_and_a_full_context_ends_the_episode(tokenizer):
    from openrft.rollout.episodes import MAX_TOOL_OUTPUT_CHARS

    with JsonServer(lambda r: Reply({"output": "x" * 50_000})) as server:
        run = runner(tokenizer, call_then_answer, server)
        sample = run.generate([[{"role": "user", "content": "q"}]], [ROW_TOOLS], 1, PARAMS)[0]
        run.close()
    shown = sample.episode[1]["content"]
    assert shown == "x" * MAX_TOOL_OUTPUT_CHARS + "\n[... 33616 more characters cut]"

    from types import SimpleNamespace

    with JsonServer(lambda r: Reply({"output": "ok"})) as server:
        engine = ScriptedEngine(tokenizer, lambda t: CALL)
        engine.model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=600))
        executor = ToolExecutor([ToolServer(name="lookup", server_url=server.url("/t"))],
                                limits=FAST)
        run = EpisodeRunner(engine, tokenizer, executor, 4)
        sample = run.generate([[{"role": "user", "content": "q"}]], [ROW_TOOLS], 1, PARAMS)[0]
        run.close()
    # the prompt (~500 tokens) + one turn + room for 2 x 64 more does not fit in 600
    assert len(server.requests) == 0 and [m["role"] for m in sample.episode] == ["assistant"]


def test_parallel_calls_share_one_tool_turn_and_a_failing_template_discards(tokenizer):
    two = ('<tool_call>[{"name": "lookup", "arguments": {"q": "a"}}, '
           '{"name": "lookup", "arguments": {"q": "b"}}]</tool_call>')
    with JsonServer(lambda r: Reply({"output": json.loads(r.body["arguments"])["q"]})) as server:
        run = runner(tokenizer, lambda t: "done" if "<tool_response>" in t else two, server)
        sample = run.generate([[{"role": "user", "content": "q"}]], [ROW_TOOLS], 1, PARAMS)[0]
        run.close()
    full = tokenizer.decode(sample.prompt_ids + sample.completion_ids, skip_special_tokens=False)
    assert full.endswith(two + "<|eos|><|user|><tool_response>\na\n</tool_response>\n"
                         "<tool_response>\nb\n</tool_response><|eos|><|assistant|>done<|eos|>")
    assert len(server.requests) == 2 and sample.output_text == "done"

    # a template that cannot render a tool turn: the episode is discarded, not the job
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "{{ bos_token }}",
        "{{ bos_token }}{% if messages | length > 2 %}{{ raise_exception('roles must "
        "alternate') }}{% endif %}")
    with JsonServer(lambda r: Reply({"output": "x"})) as server:
        run = runner(tokenizer, lambda t: CALL, server)
        sample = run.generate([[{"role": "user", "content": "q"}]], [ROW_TOOLS], 1, PARAMS)[0]
        run.close()
    assert sample.discard_reason.startswith("the chat template cannot render the tool turn")
