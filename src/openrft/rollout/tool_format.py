"""Tools in and out of a model's own text: rendering tool schemas, parsing tool calls.

Rendering goes through the chat template's `tools=` argument when the template uses it
(Qwen, Llama 3.1+, Hermes-style templates). A template that ignores tools (SmolLM2's)
gets them in the system message in the format SmolLM2-Instruct was trained on for
function calling: `<tools>[...]</tools>` and calls written as
`<tool_call>[{"name": ..., "arguments": {...}}]</tool_call>`. A template that rejects
the `tool` role gets consecutive tool results as one user turn of `<tool_response>`
blocks (Qwen's convention).

Parsing accepts the three open formats: `<tool_call>{...}</tool_call>` (Qwen, Hermes),
`<tool_call>[{...}, ...]</tool_call>` (SmolLM2) and Llama 3's bare
`{"name": ..., "parameters": {...}}` (optionally after `<|python_tag|>`).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

Messages = list[dict[str, Any]]

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_PYTHON_TAG = "<|python_tag|>"

# SmolLM2-Instruct's function-calling system prompt (its training format), with the last
# sentence asking for a plain answer once no call is needed (multi-turn episodes).
_TOOLS_SYSTEM_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of "
    "possible functions. Based on the question, you will need to make one or more "
    "function/tool calls to achieve the purpose. If none of the functions can be used, "
    "point it out and refuse to answer. If the given question lacks the parameters "
    "required by the function, also point it out.\n\n"
    "You have access to the following tools:\n<tools>{tools}</tools>\n\n"
    "The output MUST strictly adhere to the following format. Please make sure the "
    "parameter type is correct.\n"
    '<tool_call>[\n{{"name": "func_name1", "arguments": {{"argument1": "value1", '
    '"argument2": "value2"}}}},\n... (more tool calls as required)\n]</tool_call>\n'
    "When no further call is needed, answer the question directly without a tool call."
)


@dataclass
class ToolCall:
    """One call the model wrote: an OpenAI-style id, the function name, JSON arguments.
    `error` is set (and name may be empty) when the model's call could not be read."""

    call_id: str
    name: str
    arguments: str  # a JSON object as text, as in OpenAI's function.arguments
    error: str | None = None

    def as_openai(self) -> dict[str, Any]:
        """The chat-completions `tool_calls` entry (`sample.output_tools`)."""
        return {"id": self.call_id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_calls(text: str) -> list[ToolCall]:
    """The tool calls in a model turn, in order; [] when the turn is a plain answer."""
    blocks = _TOOL_CALL.findall(text)
    if blocks:
        calls: list[ToolCall] = []
        for block in blocks:
            calls.extend(_calls_from_json(block))
        return calls
    stripped = text.strip().removeprefix(_PYTHON_TAG).strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return []
        if isinstance(data, dict) and isinstance(data.get("name"), str) and (
            "parameters" in data or "arguments" in data
        ):
            return _calls_from_json(stripped)
    return []


def _calls_from_json(block: str) -> list[ToolCall]:
    try:
        data = json.loads(block)
    except ValueError:
        return [ToolCall(new_call_id(), "", block[:200], error="the tool call is not valid JSON")]
    entries = data if isinstance(data, list) else [data]
    calls = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            calls.append(ToolCall(new_call_id(), "", json.dumps(entry)[:200],
                                  error='a tool call needs a "name"'))
            continue
        arguments = entry.get("arguments", entry.get("parameters", {}))
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        calls.append(ToolCall(new_call_id(), name, text))
    return calls


def template_takes_tools(tokenizer: Any) -> bool:
    """Whether the chat template reads the `tools` variable."""
    return "tools" in (getattr(tokenizer, "chat_template", None) or "")


def render_text(
    tokenizer: Any, messages: Messages, tools: list[dict[str, Any]] | None,
    add_generation_prompt: bool,
) -> str:
    """The chat-template text of `messages` with `tools` described the model's way."""
    messages = _tool_turns_as_supported(tokenizer, messages)
    if tools and not template_takes_tools(tokenizer):
        messages = _with_tools_in_system(messages, tools)
        tools = None
    return tokenizer.apply_chat_template(
        messages, tools=tools or None, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _with_tools_in_system(messages: Messages, tools: list[dict[str, Any]]) -> Messages:
    functions = [t.get("function", t) for t in tools]
    prompt = _TOOLS_SYSTEM_PROMPT.format(tools=json.dumps(functions))
    if messages and messages[0]["role"] in ("system", "developer"):
        first = {**messages[0], "role": "system",
                 "content": f"{prompt}\n\n{messages[0]['content']}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


def _tool_turns_as_supported(tokenizer: Any, messages: Messages) -> Messages:
    if _template_accepts_tool_role(tokenizer.chat_template or ""):
        return messages
    merged: Messages = []  # consecutive tool results share one user turn (Qwen's way)
    for m in messages:
        if m["role"] != "tool":
            merged.append(m)
            continue
        block = f"<tool_response>\n{m['content']}\n</tool_response>"
        previous = merged[-1] if merged else None
        if previous is not None and previous.get("_tool_turn"):
            previous["content"] += "\n" + block
        else:
            merged.append({"role": "user", "content": block, "_tool_turn": True})
    return [{k: v for k, v in m.items() if k != "_tool_turn"} for m in merged]


@lru_cache(maxsize=16)
def _template_accepts_tool_role(template: str) -> bool:
    """Render a user + tool conversation once; a template that raises does not take it."""
    from transformers.utils.chat_template_utils import render_jinja_template

    probe = [{"role": "user", "content": "q"},
             {"role": "tool", "content": "r", "tool_call_id": "call_0", "name": "f"}]
    try:
        render_jinja_template(conversations=[probe], chat_template=template)
    except Exception:  # jinja's raise_exception and its own error types
        return False
    return True
