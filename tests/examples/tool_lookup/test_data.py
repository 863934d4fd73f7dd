"""The gene questions: which diseases qualify, the split, the rows and the graders."""

from __future__ import annotations

import json

import pytest

from openrft.examples.rare_disease.hpo_data import Disease, HPOData
from openrft.examples.tool_lookup.data import (
    TOOL_SCHEMA,
    Entry,
    answer_grader,
    demonstration_row,
    eligible_entries,
    eval_grader,
    split_entries,
    task_row,
)
from openrft.graders.base import run as grade


def _data(*diseases: Disease) -> HPOData:
    return HPOData(names={}, parents={}, diseases={d.id: d for d in diseases})


def test_only_short_single_gene_diseases_whose_name_hides_the_gene_qualify() -> None:
    data = _data(
        Disease("OMIM:1", "Bardet-Biedl syndrome 2", genes=("BBS2",)),
        Disease("OMIM:2", "Two gene disease", genes=("AAA1", "BBB2")),
        Disease("OMIM:3", "A disease whose name is far too long to ask", genes=("CCC3",)),
        Disease("OMIM:4", "PSAP deficiency", genes=("PSAP",)),  # the name spells the gene
        Disease("OMIM:5", "Unnamed gene disease", genes=("NCBIGene:123",)),
        Disease("OMIM:6", "No gene disease", genes=()),
        Disease("ORPHA:7", "Welander distal myopathy", genes=("TIA1",)),
    )
    assert eligible_entries(data) == [
        Entry("OMIM:1", "Bardet-Biedl syndrome 2", "BBS2"),
        Entry("ORPHA:7", "Welander distal myopathy", "TIA1"),
    ]


def test_split_is_disjoint_by_name_and_reproducible() -> None:
    entries = [Entry(f"OMIM:{i}", f"Disease {i % 15}", f"G{i}") for i in range(30)]
    train, test = split_entries(entries, 10, 5, seed=3)
    assert (len(train), len(test)) == (10, 5)
    names = [e.name.lower() for e in train + test]
    assert len(set(names)) == 15  # 15 distinct names, each used once
    assert split_entries(entries, 10, 5, seed=3) == (train, test)
    assert split_entries(entries, 10, 5, seed=4) != (train, test)
    with pytest.raises(ValueError, match="only 15 eligible"):
        split_entries(entries, 10, 6)


def test_rows_carry_the_question_the_tool_and_the_reference() -> None:
    entry = Entry("OMIM:1", "Bardet-Biedl syndrome 2", "BBS2")
    row = task_row(entry)
    assert row["messages"] == [{"role": "user", "content": "Which gene is associated with "
                                "Bardet-Biedl syndrome 2? Answer with the gene symbol."}]
    assert row["tools"] == [TOOL_SCHEMA] and row["gene"] == "BBS2"
    demo = demonstration_row(entry, "SYSTEM")["messages"]
    assert [m["role"] for m in demo] == ["system", "user", "assistant", "tool", "assistant"]
    call = demo[2]["content"].removeprefix("<tool_call>").removesuffix("</tool_call>")
    assert json.loads(call) == [{"name": "gene_lookup",
                                 "arguments": {"disease": "Bardet-Biedl syndrome 2"}}]
    assert demo[3]["content"] == demo[4]["content"] == "BBS2"


def test_demonstrations_render_the_prompt_exactly_as_episodes_do(tiny_model,
                                                                 smollm2_template) -> None:
    from openrft.examples.tool_lookup.run import tools_system_prompt
    from openrft.rollout.tool_format import parse_tool_calls, render_text

    _model, tokenizer = tiny_model
    tokenizer.chat_template = smollm2_template
    entry = Entry("OMIM:1", "Bardet-Biedl syndrome 2", "BBS2")
    episode_prompt = render_text(tokenizer, task_row(entry)["messages"], [TOOL_SCHEMA], True)
    demo = demonstration_row(entry, tools_system_prompt())["messages"]
    sft_prompt = tokenizer.apply_chat_template(demo[:2], tokenize=False,
                                               add_generation_prompt=True)
    assert sft_prompt == episode_prompt
    assert "<tools>" in sft_prompt and '"gene_lookup"' in sft_prompt
    (call,) = parse_tool_calls(demo[2]["content"])  # the episode parser reads the demo call
    assert (call.name, json.loads(call.arguments), call.error) == (
        "gene_lookup", {"disease": "Bardet-Biedl syndrome 2"}, None)


def _call(name: str, arguments: str) -> dict:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.mark.parametrize(
    ("output_text", "tools", "answer", "tool_use"),
    [
        ("The gene is bbs2.", [_call("gene_lookup", '{"disease": "x"}')], 1.0, 1.0),
        ("BBS1", [_call("gene_lookup", '{"disease": "x"}')], 0.0, 1.0),
        ("BBS2", None, 1.0, 0.0),  # a right guess without a call
        ("BBS2", [_call("other_tool", '{"disease": "x"}')], 1.0, 0.0),
        ("BBS2", [_call("gene_lookup", "{not json")], 1.0, 0.0),
        ("BBS2", [_call("gene_lookup", '{"disease": 3}')], 1.0, 0.0),
        ("BBS2", [_call("gene_lookup", '{"name": "x"}'), _call("gene_lookup",
                                                                '{"disease": "y"}')], 1.0, 1.0),
    ],
)
def test_graders_score_the_answer_and_report_tool_use(output_text, tools, answer,
                                                      tool_use) -> None:
    sample = {"output_text": output_text, "output_tools": tools}
    item = {"gene": "BBS2"}
    assert grade(answer_grader(), sample, item).score == answer
    result = grade(eval_grader(), sample, item)
    assert (result.score, result.errors) == (answer, [])
    assert result.metadata["graders"]["tool"]["score"] == tool_use
