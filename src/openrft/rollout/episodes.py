"""Multi-turn rollouts: the model and its tools take turns until an answer (an episode).

Each episode is one token sequence `prompt | model turn | tool turn | model turn | ...`.
A model turn is sampled by the HF engine (`decode_rows`, all unfinished episodes of the
batch together); its tool calls are parsed in the model's own format (tool_format.py),
executed concurrently on the job's tool servers (tools.py), and the tool messages are
appended as the chat template renders them. The episode ends when the model answers
without a call, stops at `max_tokens`, reaches `max_episode_steps` model turns, or a
tool fails for good (the rollout is then discarded with its reason).

What the trainer gets is a `Sample` whose `completion_ids` hold everything after the
prompt and whose `completion_mask` is 1 on the model's own tokens and 0 on the tokens the
template and the tools added, so only the model's tokens carry loss. The tool tokens'
`completion_logprobs` are 0 placeholders (never used: they are masked).

The tokens of a tool turn are the template's rendering of the conversation with the tool
messages minus its rendering without them (the chat template must extend a conversation
by appending, as ChatML, Llama 3 and the tiny test template do; one that rewrites earlier
turns ends the episode with that reason). The model's own tokens are kept exactly as
sampled, never re-tokenised. Where the engine can keep a cache (the HF engine's
`episode_turns`), each episode's KV cache is carried from one turn to the next and a turn
prefills only the tokens added since the last (rollout/turns.py); else, or with
`reuse_cache=False`, each turn prefills the episode so far again.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from openrft.errors import InvalidInput
from openrft.rollout.completions import CompletionDecoder, check_params
from openrft.rollout.engine import GenerationParams, Messages, Sample
from openrft.rollout.tool_format import ToolCall, parse_tool_calls, render_text
from openrft.rollout.tools import ToolExecutor, ToolResult, ToolServer
from openrft.rollout.turns import RePrefillTurns

logger = logging.getLogger(__name__)

Tools = list[dict[str, Any]]
MAX_TOOL_OUTPUT_CHARS = 16_384  # of one tool output shown to the model (1 MiB may arrive)


def new_trace_id() -> str:
    return f"trace_{uuid.uuid4().hex}"


@dataclass
class _Episode:
    prompt_index: int
    messages: Messages  # the conversation as rendered so far
    tools: Tools | None  # function schemas shown to the model
    text: str  # rendered text of `messages` with the generation prompt
    prompt_ids: list[int]
    trace_id: str = field(default_factory=new_trace_id)
    ids: list[int] = field(default_factory=list)  # everything after the prompt
    mask: list[float] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    transcript: Messages = field(default_factory=list)  # what sample viewers show
    calls: list[ToolCall] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    last: tuple[list[int], list[float], bool] = ([], [], True)
    turns: int = 0
    done: bool = False
    discard: str | None = None


class EpisodeRunner:
    """Runs episodes with one HF engine (anything with `decode_rows` and `generator`;
    with `episode_turns` too, the KV cache is kept between turns unless `reuse_cache`
    is False)."""

    def __init__(self, engine: Any, tokenizer: Any, executor: ToolExecutor | None,
                 max_episode_steps: int = 1, reuse_cache: bool = True) -> None:
        self.engine, self.tokenizer, self.executor = engine, tokenizer, executor
        self.reuse_cache = reuse_cache and hasattr(engine, "episode_turns")
        self.max_episode_steps = max_episode_steps if executor is not None else 1
        self.completions = CompletionDecoder(tokenizer)
        config = getattr(getattr(engine, "model", None), "config", None)
        self.max_length: int | None = getattr(config, "max_position_embeddings", None)

    def generate(self, prompts: list[Messages], tools: list[Tools | None], n: int,
                 params: GenerationParams) -> list[Sample]:
        """len(prompts) * n episodes, prompt-major, as Samples."""
        check_params(n, params)
        episodes = [self._start(i, prompt, tools[i]) for i, prompt in enumerate(prompts)
                    for _ in range(n)]
        generator = self.engine.generator(params.seed)
        turns = (self.engine.episode_turns(params, generator) if self.reuse_cache
                 else RePrefillTurns(self.engine, params, generator))
        for turn in range(self.max_episode_steps):
            active = [e for e in episodes if not e.done]
            if not active:
                break
            outputs = turns.decode([id(e) for e in active],
                                   [e.prompt_ids + e.ids for e in active])
            pending = []
            for episode, output in zip(active, outputs, strict=True):
                calls = self._model_turn(episode, output)
                last_turn = turn + 1 == self.max_episode_steps
                if not calls or not output[2] or last_turn or self._full(episode, params):
                    episode.done = True
                else:
                    pending.append((episode, calls))
            if pending:
                self._tool_turns(pending)
        return [self._sample(e, params) for e in episodes]

    def _full(self, episode: _Episode, params: GenerationParams) -> bool:
        """No room for a tool turn and another model turn in the model's context."""
        used = len(episode.prompt_ids) + len(episode.ids) + 2 * params.max_tokens
        return self.max_length is not None and used > self.max_length

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()

    def _start(self, index: int, prompt: Messages, tools: Tools | None) -> _Episode:
        if not tools and self.executor is not None:  # job tools the rows do not describe
            tools = [{"type": "function", "function": {"name": name}}
                     for name in self.executor.names]
        try:
            text = render_text(self.tokenizer, prompt, tools, add_generation_prompt=True)
        except Exception as err:  # jinja raises its own error types
            raise InvalidInput(f"prompts[{index}]", f"chat template failed: {err}") from None
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return _Episode(index, list(prompt), tools or None, text, ids)

    def _model_turn(self, episode: _Episode, output: tuple[list[int], list[float], bool]
                    ) -> list[ToolCall]:
        ids, logprobs, _ = output
        episode.ids += ids
        episode.logprobs += logprobs
        episode.mask += [1.0] * len(ids)
        episode.last, episode.turns = output, episode.turns + 1
        text = self.completions.text(ids)
        calls = parse_tool_calls(text) if episode.tools else []
        episode.calls += calls
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = [c.as_openai() for c in calls]
        episode.transcript.append(message)
        return calls

    def _tool_turns(self, pending: list[tuple[_Episode, list[ToolCall]]]) -> None:
        assert self.executor is not None
        jobs = [(call, episode.trace_id) for episode, calls in pending for call in calls]
        results = iter(self.executor.run(jobs))
        for episode, calls in pending:
            done = [next(results) for _ in calls]
            episode.records += [_record(r) for r in done]
            discard = next((r.discard for r in done if r.discard), None)
            if discard is not None:
                episode.done, episode.discard = True, f"tool failed: {discard}"
                continue
            self._append_tool_messages(episode, done)

    def _append_tool_messages(self, episode: _Episode, results: list[ToolResult]) -> None:
        """Append the tool turn's tokens (mask 0), as the chat template renders them."""
        ids = episode.last[0]
        content = self.completions.text(ids)
        assistant = {"role": "assistant", "content": content}
        tool_messages = [{"role": "tool", "tool_call_id": r.call.call_id, "name": r.call.name,
                          "content": _shown(r.output)} for r in results]
        try:
            before = render_text(self.tokenizer, [*episode.messages, assistant], episode.tools,
                                 add_generation_prompt=False)
            after = render_text(self.tokenizer, [*episode.messages, assistant, *tool_messages],
                                episode.tools, add_generation_prompt=True)
        except Exception as err:  # e.g. a template that insists roles alternate
            episode.done = True
            episode.discard = f"the chat template cannot render the tool turn: {err}"
            return
        head = episode.text + content
        if not (before.startswith(head) and after.startswith(before)):
            episode.done = True
            episode.discard = "the chat template does not extend the conversation by appending"
            return
        end_of_turn = before[len(head):]  # what the template closes a turn with
        emitted = self.tokenizer.decode(ids, skip_special_tokens=False)
        emitted = emitted[len(content):] if emitted.startswith(content) else ""
        if end_of_turn.startswith(emitted):  # the model's eos already closed the turn
            end_of_turn = end_of_turn[len(emitted):]
        added = self.tokenizer(end_of_turn + after[len(before):],
                               add_special_tokens=False)["input_ids"]
        episode.ids += added
        episode.logprobs += [0.0] * len(added)
        episode.mask += [0.0] * len(added)
        episode.messages += [assistant, *tool_messages]
        episode.transcript += tool_messages
        episode.text = after
        for record in episode.records[-len(results):]:
            record["output_tokens"] = len(added) / len(results)

    def _sample(self, episode: _Episode, params: GenerationParams) -> Sample:
        ids, logprobs, stopped = episode.last
        sample = self.completions.sample(prompt_index=episode.prompt_index,
                                         prompt_ids=episode.prompt_ids, completion_ids=ids,
                                         logprobs=logprobs, stopped=stopped, params=params)
        sample.completion_ids = list(episode.ids)
        sample.completion_logprobs = list(episode.logprobs)
        sample.completion_mask = list(episode.mask)
        sample.output_tools = [c.as_openai() for c in episode.calls if c.error is None]
        sample.episode = list(episode.transcript)  # after the prompt: turns, calls, outputs
        sample.tool_records = episode.records
        sample.trace_id = episode.trace_id
        sample.discard_reason = episode.discard
        return sample


def _shown(output: str) -> str:
    """A tool output as the model sees it: cut at MAX_TOOL_OUTPUT_CHARS, saying so."""
    if len(output) <= MAX_TOOL_OUTPUT_CHARS:
        return output
    cut = len(output) - MAX_TOOL_OUTPUT_CHARS
    return f"{output[:MAX_TOOL_OUTPUT_CHARS]}\n[... {cut} more characters cut]"


def _record(result: ToolResult) -> dict[str, Any]:
    return {"name": result.call.name or "(invalid)", "call_id": result.call.call_id,
            "latency_s": result.latency_s, "error": result.error, "status": result.status,
            "output_tokens": 0.0}


def episode_metrics(samples: list[Sample]) -> dict[str, float]:
    """Azure's four tool metrics plus episode shape, for one step's samples ({} when no
    sample is an episode): calls per rollout (all and per tool), tool-output tokens per
    call, mean tool latency, tool errors, discarded rollouts and model turns."""
    episodes = [s for s in samples if s.episode is not None]
    if not episodes:
        return {}
    records = [r for s in episodes for r in s.tool_records]
    per_tool = Counter(r["name"] for r in records)
    metrics: dict[str, float] = {
        "tool_calls_per_rollout": len(records) / len(episodes),
        "tool_tokens_per_call": sum(r["output_tokens"] for r in records) / max(len(records), 1),
        "tool_latency_s_mean": sum(r["latency_s"] for r in records) / max(len(records), 1),
        "tool_errors": float(sum(1 for r in records if r["error"])),
        "discarded_rollouts": float(sum(1 for s in episodes if s.discard_reason)),
        "episode_turns_mean": sum(sum(m["role"] == "assistant" for m in s.episode or [])
                                  for s in episodes) / len(episodes),
    }
    for name, count in sorted(per_tool.items()):
        metrics[f"tool_calls_per_rollout/{name}"] = count / len(episodes)
    return metrics


def make_episode_runner(engine: Any, tokenizer: Any, tools: list[dict[str, Any]] | None,
                        max_episode_steps: int, rows_have_tools: bool) -> EpisodeRunner | None:
    """The runner a job needs: None when it has neither tool servers nor rows with `tools`
    (plain single-turn sampling); tools shown but not executed when only rows have them
    (OpenAI's public RFT: calls graded through `sample.output_tools`). An engine without
    `decode_rows` (vLLM) refuses tool servers and samples rows' tools unshown."""
    if not tools and not rows_have_tools:
        return None
    if not hasattr(engine, "decode_rows"):
        if not tools:  # as before episodes existed: single-turn, the tools not shown
            logger.warning("this engine cannot show the rows' tools; sampling without them")
            return None
        raise InvalidInput("expert.engine", "tools and multi-turn episodes need the hf engine")
    executor = ToolExecutor([ToolServer.model_validate(t) for t in tools]) if tools else None
    return EpisodeRunner(engine, tokenizer, executor, max_episode_steps)
