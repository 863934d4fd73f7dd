"""Turning supervised rows into token ids and loss masks, and those into batches.

Two row shapes:
- chat rows `{"messages": [..., {"role": "assistant", "content": ...}]}`: the conversation
  is rendered with the tokenizer's chat template and only the assistant turns (content
  and the end-of-turn token the template adds) carry loss; everything else is masked,
  as are assistant turns marked `"weight": 0` (OpenAI's SFT format).
- text rows `{"text": "..."}`: causal LM loss on every token. Texts are joined with
  BOS/EOS and packed into blocks of `max_length`, so no compute is spent on padding.

Assistant spans are found in characters: the text the template renders for the prompt
(with the generation prompt) is a prefix of the conversation text, so the assistant turn
is the characters between that prefix and the render through the assistant message.
Token offsets then map characters to tokens, whatever the tokenizer merges.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from openrft.errors import InvalidInput

IGNORE_INDEX = -100  # label value the HF causal-LM loss skips
_ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass
class TokenizedExample:
    """One training sequence: `labels[t]` is `input_ids[t]` or IGNORE_INDEX (no loss)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_loss_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def check_row(row: Any, where: str) -> str:
    """The row's kind, "chat" or "text"; InvalidInput naming `where` and the field otherwise."""
    if not isinstance(row, dict):
        raise InvalidInput(where, "expected a JSON object")
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise InvalidInput(f"{where}: messages", "expected a non-empty list of messages")
        for i, message in enumerate(messages):
            _check_message(message, f"{where}: messages[{i}]")
        if not any(_trained(m) for m in messages):
            raise InvalidInput(f"{where}: messages", "no assistant message to learn from")
        return "chat"
    if "text" in row:
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise InvalidInput(f"{where}: text", "expected a non-empty string")
        return "text"
    raise InvalidInput(where, 'expected "messages" (chat row) or "text" (plain text row)')


def _check_message(message: Any, where: str) -> None:
    if not isinstance(message, dict):
        raise InvalidInput(where, "expected an object with role and content")
    if message.get("role") not in _ROLES:
        raise InvalidInput(f"{where}.role", f"expected one of {list(_ROLES)}")
    content = message.get("content")
    parts_ok = isinstance(content, list) and all(
        isinstance(p, dict) and isinstance(p.get("text"), str) for p in content
    )
    if not isinstance(content, str) and not parts_ok:
        raise InvalidInput(f"{where}.content", "expected a string or a list of text parts")
    if message.get("weight", 1) not in (0, 1) or isinstance(message.get("weight"), bool):
        raise InvalidInput(f"{where}.weight", "expected 0 (do not train on it) or 1")


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, list):
        content = "".join(part["text"] for part in content)
    return {"role": message["role"], "content": content}


def _trained(message: dict[str, Any]) -> bool:
    """Assistant turns carry loss unless OpenAI's `"weight": 0` excludes them."""
    return message["role"] == "assistant" and message.get("weight", 1) == 1


def assistant_spans(
    tokenizer: Any, messages: list[dict[str, Any]], where: str
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character spans of trained turns."""
    trained = [_trained(m) for m in messages]
    messages = [_plain(m) for m in messages]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i in range(len(messages)):
        if not trained[i]:
            continue
        prefix = tokenizer.apply_chat_template(
            messages[:i], tokenize=False, add_generation_prompt=True
        )
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (through.startswith(prefix) and text.startswith(through)):
            raise InvalidInput(
                f"{where}: messages[{i}]",
                "the chat template renders earlier turns differently once later turns exist, "
                "so the assistant tokens cannot be located",
            )
        spans.append((len(prefix), len(through)))
    return text, spans


def chat_example(
    tokenizer: Any, messages: list[dict[str, Any]], max_length: int, where: str
) -> TokenizedExample:
    """Token ids of the rendered chat with loss only on assistant tokens (right-truncated)."""
    text, spans = assistant_spans(tokenizer, messages, where)
    encoding = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )
    ids = encoding["input_ids"][:max_length]
    labels = [
        token if any(lo <= start < hi for lo, hi in spans) else IGNORE_INDEX
        for token, (start, _end) in zip(ids, encoding["offset_mapping"], strict=False)
    ]
    return TokenizedExample(ids, labels)


def packed_text_examples(
    tokenizer: Any, texts: Sequence[str], block_size: int
) -> list[TokenizedExample]:
    """Texts as one BOS text EOS BOS text EOS ... stream, cut into `block_size` blocks.

    A block may span documents (as in GPT pretraining); a last block shorter than two
    tokens is dropped since it predicts nothing.
    """
    stream: list[int] = []
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for ids in tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]:
        stream.extend(([bos] if bos is not None else []) + ids + ([eos] if eos is not None else []))
    blocks = [stream[i : i + block_size] for i in range(0, len(stream), block_size)]
    return [TokenizedExample(block, list(block)) for block in blocks if len(block) >= 2]


def build_examples(
    tokenizer: Any, rows: Sequence[dict[str, Any]], locations: Sequence[str], max_length: int
) -> tuple[list[TokenizedExample], list[str]]:
    """Validate every row, then tokenize chat rows one by one and pack the text rows.

    Returns the examples and the locations of chat rows skipped because no assistant
    token survived truncation to `max_length` (they would train nothing).
    """
    kinds = [check_row(row, where) for row, where in zip(rows, locations, strict=True)]
    examples: list[TokenizedExample] = []
    skipped: list[str] = []
    for row, where, kind in zip(rows, locations, kinds, strict=True):
        if kind != "chat":
            continue
        example = chat_example(tokenizer, row["messages"], max_length, where)
        if example.n_loss_tokens > 0:
            examples.append(example)
        else:
            skipped.append(where)
    texts = [row["text"] for row, kind in zip(rows, kinds, strict=True) if kind == "text"]
    if texts:
        examples += packed_text_examples(tokenizer, texts, max_length)
    return examples, skipped


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, bucket_batches: int = 50
) -> list[list[int]]:
    """Batches of example indices with similar lengths (little padding), in random order.

    Indices are shuffled, cut into windows of `bucket_batches` batches, sorted by length
    inside each window and split into batches; then the batch order is shuffled.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids, attention_mask, labels, each (B, T)."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
