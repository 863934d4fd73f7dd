"""SFT tokenisation: assistant-only loss masks, text packing, batching, row validation."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from openrft.errors import InvalidInput
from openrft.sft.examples import (
    IGNORE_INDEX,
    build_examples,
    chat_example,
    check_row,
    collate,
    length_bucketed_batches,
    packed_text_examples,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_only_assistant_tokens_carry_loss(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "The answer is 4."},
    ]
    example = chat_example(tokenizer, messages, max_length=512, where="row")
    # The tiny template renders <|bos|><|user|>{q}<|eos|><|assistant|>{a}<|eos|>: the prompt
    # part is masked; the answer and the closing <|eos|> (so the model learns to stop) are not.
    prompt_ids = _encode(tokenizer, "<|bos|><|user|>What is 2 + 2?<|eos|><|assistant|>")
    answer_ids = _encode(tokenizer, "The answer is 4.") + [tokenizer.eos_token_id]
    assert example.input_ids == prompt_ids + answer_ids
    assert example.labels == [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def test_every_assistant_turn_is_trained_and_user_turns_are_masked(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "sec"}, {"text": "ond"}]},
        {"role": "assistant", "content": "two"},
    ]
    example = chat_example(tokenizer, messages, max_length=512, where="row")
    trained = [tok for tok in example.labels if tok != IGNORE_INDEX]
    eos = tokenizer.eos_token_id
    assert trained == _encode(tokenizer, "one") + [eos] + _encode(tokenizer, "two") + [eos]
    masked_text = tokenizer.decode(
        [t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab == IGNORE_INDEX]
    )
    assert "second" in masked_text and "Be brief." in masked_text


def test_chat_example_truncates_on_the_right(tokenizer) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "the " * 50}]
    example = chat_example(tokenizer, messages, max_length=10, where="row")
    assert len(example.input_ids) == len(example.labels) == 10
    assert example.input_ids[0] == tokenizer.bos_token_id


def test_build_examples_drops_rows_whose_answer_was_cut_off(tokenizer) -> None:
    long_prompt = [{"role": "user", "content": "word " * 40}, {"role": "assistant", "content": "x"}]
    short = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    examples, skipped = build_examples(
        tokenizer, [{"messages": long_prompt}, {"messages": short}], ["r0", "r1"], max_length=8
    )
    assert len(examples) == 1 and examples[0].n_loss_tokens == 2  # "b" and <|eos|>
    assert skipped == ["r0"]


def test_text_rows_are_packed_into_full_blocks(tokenizer) -> None:
    texts = ["the patient has a fever", "gene list answer", "one two three four five six"]
    blocks = packed_text_examples(tokenizer, texts, block_size=8)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream = []
    for text in texts:
        stream += [bos] + _encode(tokenizer, text) + [eos]
    assert [t for b in blocks for t in b.input_ids] == stream
    assert all(len(b.input_ids) == 8 for b in blocks[:-1]) and len(blocks[-1].input_ids) <= 8
    assert all(b.labels == b.input_ids for b in blocks)


@pytest.mark.parametrize(
    ("row", "location"),
    [
        ([1, 2], "f.jsonl:3"),
        ({"prompt": "x"}, "f.jsonl:3"),
        ({"messages": []}, "f.jsonl:3: messages"),
        ({"messages": [{"role": "user", "content": "q"}]}, "f.jsonl:3: messages"),
        ({"messages": [{"role": "robot", "content": "q"}]}, "f.jsonl:3: messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "f.jsonl:3: messages[0].content"),
        ({"text": ""}, "f.jsonl:3: text"),
    ],
)
def test_check_row_names_the_bad_field(row: object, location: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_row(row, "f.jsonl:3")
    assert info.value.location == location


def test_length_bucketed_batches_cover_every_example_once() -> None:
    lengths = [random.Random(1).randint(1, 100) for _ in range(103)]
    batches = length_bucketed_batches(lengths, batch_size=8, rng=random.Random(0), bucket_batches=4)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(103))
    assert all(len(b) <= 8 for b in batches)
    # inside a window batches are length-sorted: the spread within a batch stays small
    # compared with a random batch (whose spread is near the full 1..100 range)
    mean_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert mean_spread / len(batches) < 40


def test_collate_pads_on_the_right(tokenizer) -> None:
    from openrft.sft.examples import TokenizedExample

    batch = collate(
        [TokenizedExample([5, 6, 7], [IGNORE_INDEX, 6, 7]), TokenizedExample([8], [8])], pad_id=0
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]


def test_assistant_turns_with_weight_zero_are_masked(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "wrong", "weight": 0},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "right", "weight": 1},
    ]
    example = chat_example(tokenizer, messages, max_length=512, where="row")
    trained = [tok for tok in example.labels if tok != IGNORE_INDEX]
    assert trained == _encode(tokenizer, "right") + [tokenizer.eos_token_id]
    only_weight_zero = [messages[0], messages[1]]
    with pytest.raises(InvalidInput, match="no assistant message"):
        check_row({"messages": only_weight_zero}, "r")
    with pytest.raises(InvalidInput, match=r"messages\[1\]\.weight"):
        check_row({"messages": [messages[0], dict(messages[1], weight=0.5)]}, "r")
