"""Episode turns that keep the KV cache (`CachedTurns`) against turns that prefill each
episode so far again (`decode_rows`, the independent oracle), on the tiny model.

Three rows of different lengths take up to three greedy turns; between turns each gets
"tool" tokens of a different length, rows drop out at different turns, and stop strings
end rows at different steps inside a turn (so a finished row's cache holds pads that must
stay masked out).
"""

from __future__ import annotations

import pytest
import torch

from openrft.rollout.decode import TransformersForward
from openrft.rollout.engine import GenerationParams
from openrft.rollout.hf import HFRolloutEngine
from openrft.rollout.turns import CachedTurns

QUESTIONS = ["hi", "what is the sum of two and three, then times four", "add one and nine"]
TOOL_TEXT = ["ok", "the value is seven hundred and twelve", "no"]


def tool_tokens(tok, row: int, turn: int) -> list[int]:
    text = f"<|eos|><|user|>{TOOL_TEXT[(row + turn) % 3]}<|eos|><|assistant|>"
    return tok(text, add_special_tokens=False)["input_ids"]


def stop_strings(engine: HFRolloutEngine, rows: list[list[int]], max_tokens: int) -> list[str]:
    """Stop strings that end some of the greedy first turns early: the text of the 4th
    token of the middle row's turn, as the re-prefill decode writes it."""
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
    turn = engine.decode_rows(rows, params, None)[1][0]
    return [engine.tokenizer.decode(turn[3:4])]


def run_turns(engine: HFRolloutEngine, prompts: list[list[int]], params: GenerationParams,
              cached: bool) -> tuple[list[list[tuple]], list[list[int]]]:
    """Three turns; row i is continued while it is in `schedule[turn]`."""
    schedule = [list(range(len(prompts))), [0, 2], [2]]
    rows = {i: list(p) for i, p in enumerate(prompts)}
    session = engine.episode_turns(params, None) if cached else None
    outputs = []
    for turn, active in enumerate(schedule):
        batch = [rows[i] for i in active]
        if session is not None:
            result = session.decode(active, batch)
        else:
            result = engine.decode_rows(batch, params, None)
        outputs.append(result)
        for i, (ids, _, _) in zip(active, result, strict=True):
            rows[i] = rows[i] + ids + tool_tokens(engine.tokenizer, i, turn)
    return outputs, [rows[i] for i in range(len(prompts))]


def forward_named(name: str):
    """The engine's `decode_forward` factory: None is the engine's default (for the tiny
    Llama, the fast path's hand-written forward)."""
    if name == "preallocating":
        from openrft.fast.transformers_cache import PreallocatingForward

        return PreallocatingForward
    return {"engine default": None, "plain": TransformersForward}[name]


@pytest.mark.parametrize("forward", ["engine default", "plain", "preallocating"])
def test_cached_turns_match_re_prefilled_turns(tiny_model, forward):
    model, tok = tiny_model
    engine = HFRolloutEngine(model, tok, decode_forward=forward_named(forward))
    prompts = [engine.render_prompt([{"role": "user", "content": q}]) for q in QUESTIONS]
    assert len({len(p) for p in prompts}) == 3
    params = GenerationParams(max_tokens=12, temperature=0.0,
                              stop=stop_strings(engine, prompts, 12))
    expected, expected_rows = run_turns(engine, prompts, params, cached=False)
    got, got_rows = run_turns(engine, prompts, params, cached=True)
    lengths = [len(ids) for ids, _, _ in expected[0]]
    assert min(lengths) < max(lengths) == 12  # rows end at different steps of a turn
    assert got_rows == expected_rows  # token for token, every turn
    for want_turn, got_turn in zip(expected, got, strict=True):
        for (ids, logprobs, stopped), (g_ids, g_logprobs, g_stopped) in zip(
                want_turn, got_turn, strict=True):
            assert g_ids == ids and g_stopped == stopped
            assert g_logprobs == pytest.approx(logprobs, abs=1e-4)


def test_a_later_turn_prefills_only_the_new_tokens(tiny_model):
    model, tok = tiny_model
    engine = HFRolloutEngine(model, tok, decode_forward=TransformersForward)
    prompts = [engine.render_prompt([{"role": "user", "content": q}]) for q in QUESTIONS[:2]]
    params = GenerationParams(max_tokens=8, temperature=0.0)
    widths: list[tuple[int, int]] = []  # (rows, tokens) of every forward's input ids
    hook = model.get_input_embeddings().register_forward_hook(
        lambda module, args, output: widths.append(tuple(args[0].shape)))
    try:
        session = engine.episode_turns(params, None)
        first = session.decode([0, 1], prompts)
        rows = [p + ids + tool_tokens(tok, i, 0) for i, (p, (ids, _, _)) in
                enumerate(zip(prompts, first, strict=True))]
        turn_two_starts = len(widths)
        session.decode([0, 1], rows)
        cached_prefill = widths[turn_two_starts]
        widths.clear()
        engine.decode_rows(rows, params, None)
        re_prefill = widths[0]
    finally:
        hook.remove()
    assert re_prefill == (2, max(len(r) for r in rows))  # the whole episode so far
    # the tool tokens, plus the last sampled token of a row the decode never fed back
    new = max(len(tool_tokens(tok, i, 0)) for i in range(2))
    assert cached_prefill[0] == 2 and new <= cached_prefill[1] <= new + 1


def test_a_session_refuses_episodes_it_has_no_cache_for(tiny_model):
    model, tok = tiny_model
    engine = HFRolloutEngine(model, tok, decode_forward=TransformersForward)
    prompt = engine.render_prompt([{"role": "user", "content": "hi"}])
    session = engine.episode_turns(GenerationParams(max_tokens=2, temperature=0.0), None)
    (ids, _, _), = session.decode([7], [prompt])
    with pytest.raises(ValueError, match="no cache"):
        session.decode([8], [prompt])
    with pytest.raises(ValueError, match="extend the tokens"):
        session.decode([7], [prompt[:-1] + ids + [5]])


def test_chunked_sessions_keep_each_chunks_cache(tiny_model):
    model, tok = tiny_model
    engine = HFRolloutEngine(model, tok, decode_forward=TransformersForward, max_batch_rows=2)
    prompts = [engine.render_prompt([{"role": "user", "content": q}]) for q in QUESTIONS]
    params = GenerationParams(max_tokens=6, temperature=0.0)
    expected, _ = run_turns(engine, prompts, params, cached=False)
    got, _ = run_turns(engine, prompts, params, cached=True)
    assert [[t[0] for t in turn] for turn in got] == [[t[0] for t in turn] for turn in expected]
    session = engine.episode_turns(params, None)
    assert isinstance(session, CachedTurns)
    session.decode([0, 1, 2], prompts)
    assert [len(c.keys) for c in session.chunks] == [2, 1]
    assert torch.equal(session.chunks[0].mask.sum(dim=1),
                       torch.tensor([len(c) for c in session.chunks[0].fed]))


def test_grouped_prompts_held_once_are_continued_row_by_row(tiny_model):
    """GRPO repeats each prompt: the fast forward then holds a long prompt once per group
    (SharedPromptCache), and a continued turn must give each row its own cache."""
    model, tok = tiny_model
    engine = HFRolloutEngine(model, tok)
    long = [f"{q}, and {QUESTIONS[1]} then check again" for q in QUESTIONS[1:]]
    prompts = [engine.render_prompt([{"role": "user", "content": q}]) for q in long]
    assert min(len(p) for p in prompts) >= 32  # long enough to be held once per group
    grouped = [prompts[0], prompts[0], prompts[1], prompts[1]]
    params = GenerationParams(max_tokens=10, temperature=0.0)
    session = engine.episode_turns(params, None)
    session.decode([0, 1, 2, 3], grouped)
    assert type(session.chunks[0].forward.caches[0]).__name__ == "SharedPromptCache"
    expected, expected_rows = run_turns(engine, grouped, params, cached=False)
    got, got_rows = run_turns(engine, grouped, params, cached=True)
    assert got_rows == expected_rows
    for want_turn, got_turn in zip(expected, got, strict=True):
        for want, have in zip(want_turn, got_turn, strict=True):
            assert have[1] == pytest.approx(want[1], abs=1e-4)
