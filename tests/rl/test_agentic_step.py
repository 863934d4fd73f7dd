"""One GRPO step over episodes: tool calls executed, a failing tool's rollouts discarded,
the endpoint grader called with each episode's trace id, tool metrics reported."""

from __future__ import annotations

import torch

from json_server import JsonServer, Reply
from openrft.graders.base import make_reward_fn
from openrft.remote_call import EndpointLimits
from openrft.rl.config import config_from_dict, resolve
from openrft.rl.policy_setup import build_policy, make_generation_params, make_rollout_engine
from openrft.rl.step import StepContext, run_step
from openrft.rollout.episodes import EpisodeRunner
from openrft.rollout.tools import ToolExecutor, ToolServer

FAST = EndpointLimits(timeout_s=0.5, backoff_s=0.01, max_backoff_s=0.01)


ANSWERS = ("the answer", "an answer")  # the two kept episodes end differently


class ScriptedEngine:
    """Row 0's episodes look up "good" (the tool answers), row 1's "bad" (it 503s); the
    kept episodes then answer differently (identical episodes with opposite advantages
    would have an exactly zero gradient: only float rounding would move the weights)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def generator(self, seed):
        return None

    def decode_rows(self, rows, params, generator):
        turns = []
        for i, row in enumerate(rows):
            text = self.tokenizer.decode(row, skip_special_tokens=False)
            q = "good" if "question 0" in text else "bad"
            reply = (ANSWERS[i % 2] if "<tool_response>" in text else
                     f'<tool_call>{{"name": "lookup", "arguments": {{"q": "{q}"}}}}</tool_call>')
            ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"]
            turns.append((ids + [self.tokenizer.eos_token_id], [-1.0] * (len(ids) + 1), True))
        return turns


def tool(request):
    if '"bad"' in request.body["arguments"]:
        return Reply(raw="unavailable", status=503)
    return Reply({"type": "function_call_output", "call_id": request.body["call_id"],
                  "output": "an answer"})


def grade(request):
    # a score that differs between episodes: the last hex digit of the trace id
    return Reply({"score": int(request.body["trace_id"][-1], 16) / 15})


def test_a_step_over_episodes(make_config):
    with JsonServer(tool) as tools, JsonServer(grade) as grader:
        config = config_from_dict(make_config(
            tools=[{"name": "lookup", "server_url": tools.url("/lookup")}],
            max_episode_steps=3,
            grader={"type": "endpoint", "name": "remote", "url": grader.url("/grade")},
            expert={"group_size": 2, "max_tokens": 8, "keep_samples": 4}))
        cfg = resolve(config, n_train_rows=16, n_valid_rows=4)
        assert cfg.max_episode_steps == 3 and cfg.tools[0]["name"] == "lookup"
        policy, tokenizer, _ = build_policy(cfg, None)
        reward_fn, built = make_reward_fn(cfg.grader)
        executor = ToolExecutor([ToolServer(**cfg.tools[0])], limits=FAST)
        ctx = StepContext(cfg, policy, make_rollout_engine(cfg, policy, tokenizer),
                          reward_fn, make_generation_params(cfg),
                          episodes=EpisodeRunner(ScriptedEngine(tokenizer), tokenizer,
                                                 executor, cfg.max_episode_steps))
        before = {n: p.detach().clone() for n, p in policy.model.named_parameters()
                  if p.requires_grad}
        items = [{"messages": [{"role": "user", "content": f"question {i}"}]} for i in (0, 1)]
        output = run_step(ctx, 1, items, [item["messages"] for item in items])
        built.close()
        ctx.episodes.close()
    metrics = output.metrics
    # row 0: 2 episodes x 1 successful call; row 1: 2 episodes x 1 call that fails for good
    assert metrics["tool_calls_per_rollout"] == 1.0
    assert metrics["tool_calls_per_rollout/lookup"] == 1.0
    assert metrics["discarded_rollouts"] == 2 and metrics["tool_errors"] == 2
    assert metrics["grader_errors"] == 2  # the discarded rollouts, flagged, not graded
    assert len(grader.requests) == 2  # only the kept episodes reached the grader
    good_traces = {r.body["trace_id"] for r in tools.requests if '"good"' in r.body["arguments"]}
    assert {r.body["trace_id"] for r in grader.requests} == good_traces
    assert metrics["episode_turns_mean"] == 1.5  # kept: call + answer; discarded: call
    call_tokens = len(tokenizer('<tool_call>{"name": "lookup", "arguments": {"q": "good"}}'
                                "</tool_call>", add_special_tokens=False)["input_ids"]) + 1
    answer_tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) + 1
                        for a in ANSWERS)  # of both kept episodes
    # model tokens only: kept episodes call + answer, discarded ones their call
    bad_tokens = len(tokenizer('<tool_call>{"name": "lookup", "arguments": {"q": "bad"}}'
                               "</tool_call>", add_special_tokens=False)["input_ids"]) + 1
    expected = (2 * call_tokens + answer_tokens + 2 * bad_tokens) / 4
    assert metrics["completion_tokens_mean"] == expected
    records = {r["trace_id"]: r for r in output.samples}
    assert len(records) == 4
    kept = [r for r in records.values() if r["discard_reason"] is None]
    assert len(kept) == 2 and all([m["role"] for m in r["episode"]] ==
                                  ["assistant", "tool", "assistant"] for r in kept)
    discarded = [r for r in records.values() if r["discard_reason"]]
    assert all(r["advantage"] == 0.0 for r in discarded)
    assert all("rollout discarded" in r["errors"][0] for r in discarded)
    assert output.warnings == ["Step 1: 2 rollout(s) discarded: tool failed: lookup: "
                               "HTTP 503 from tool 'lookup' (after 4 attempts)"]
    changed = [n for n, p in policy.model.named_parameters()
               if p.requires_grad and not torch.equal(p, before[n])]
    scores = [r["score"] for r in kept]
    assert (len(changed) > 0) == (scores[0] != scores[1])  # kept group has signal: weights move
