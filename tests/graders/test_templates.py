"""Templates: OpenAI's `{{ namespace.path }}` substitution, errors that name the path."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openrft.data.templates import (
    check_template_fields,
    grader_templates,
    make_sample,
    render,
    template_paths,
    validate_template,
)
from openrft.errors import InvalidInput

ITEM = {
    "answer": "Paris",
    "a": {"b": [10, 20, {"c": "deep"}]},
    "n": 3,
    "x": 1.5,
    "flag": True,
    "none": None,
    "odd key": "spaces",
}
SAMPLE = {
    "output_text": "The answer is Paris",
    "output_json": {"compliant": "yes", "score": 0.5},
    "output_tools": [{"function": {"name": "get_acceptors", "arguments": '{"smiles": "CCO"}'}}],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ item.answer }}", "Paris"),
        ("{{item.answer}}", "Paris"),
        ("{{   item . answer   }}", "Paris"),
        ("{{ sample.output_text }}", "The answer is Paris"),
        ("{{ sample.output_json.compliant }}", "yes"),
        ("{{sample.output_tools[0].function.name}}", "get_acceptors"),
        ("{{ sample.output_tools[0].function.arguments }}", '{"smiles": "CCO"}'),
        ("{{item.a.b[2]}}", '{"c": "deep"}'),
        ("{{item.a.b[2].c}}", "deep"),
        ("{{ item.a.b [ 1 ] }}", "20"),
        ("{{ item.a.b[-1].c }}", "deep"),
        ('{{ item["odd key"] }}', "spaces"),
        ("Q: {{item.answer}} / {{ item.n }}!", "Q: Paris / 3!"),
        ("no tags at all", "no tags at all"),
        ("{ single } and {{ unclosed", "{ single } and {{ unclosed"),
    ],
)
def test_render_paths(template, expected):
    assert render(template, ITEM, SAMPLE) == expected


def test_non_string_values_render_as_json():
    # The documented rule: strings verbatim, everything else compact JSON.
    assert render("{{item.n}}|{{item.x}}|{{item.flag}}|{{item.none}}", ITEM, SAMPLE) == (
        "3|1.5|true|null"
    )
    assert render("{{ item.a }}", ITEM, SAMPLE) == '{"b": [10, 20, {"c": "deep"}]}'
    assert render("{{ sample.output_json.score }}", ITEM, SAMPLE) == "0.5"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ item.answer2 }}", "template {{ item.answer2 }}: item has no field 'answer2'"),
        ("{{ item.a.z }}", "template {{ item.a.z }}: item.a has no field 'z'"),
        ("{{ item.a.b[7] }}", "template {{ item.a.b[7] }}: item.a.b has no index 7 (length 3)"),
        ("{{ item.answer[0] }}", "item.answer is a string, not a list"),
        ("{{ item.n.digits }}", "item.n is a number, not an object"),
        ("{{ sample.output_audio }}", "sample has no field 'output_audio'"),
    ],
)
def test_missing_path_names_full_path(template, message):
    with pytest.raises(InvalidInput) as info:
        render(template, ITEM, SAMPLE)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ foo.bar }}", "unknown namespace 'foo' (only item and sample)"),
        ("{{ item }}", "needs a variable after the namespace"),
        ("{{ item..a }}", "cannot parse path"),
        ("{{ item.a[x] }}", "cannot parse path"),
        ("{{ 3 }}", "expected `namespace.field`"),
    ],
)
def test_malformed_tags_rejected_with_field(template, message):
    with pytest.raises(InvalidInput) as info:
        validate_template(template, "input")
    assert info.value.location == "input"
    assert message in info.value.message
    assert template in info.value.message


def test_template_paths_lists_canonical_paths():
    paths = template_paths('{{ sample.output_tools [0]. function.name }} {{item["odd key"]}}')
    assert [p.dotted for p in paths] == ["sample.output_tools[0].function.name", 'item["odd key"]']
    assert [p.namespace for p in paths] == ["sample", "item"]


def test_make_sample_parses_json_text_like_graders_run():
    assert make_sample("plain") == {"output_text": "plain"}
    assert make_sample('{"a": 1}') == {"output_text": '{"a": 1}', "output_json": {"a": 1}}
    # A bare JSON scalar is not an output object: OpenAI's output_json is an object.
    assert make_sample("42") == {"output_text": "42"}
    assert make_sample("x", {"k": "v"}) == {"output_text": "x", "output_json": {"k": "v"}}


MULTI = {
    "type": "multi",
    "name": "m",
    "calculate_output": "a + b",
    "graders": {
        "a": {
            "type": "string_check",
            "name": "a",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }} {{ item.meta.source }}",
            "operation": "eq",
        },
        "b": {
            "type": "score_model",
            "name": "b",
            "model": "judge",
            "input": [
                {"role": "system", "content": "grade"},
                {"role": "user", "content": [{"type": "input_text", "text": "{{ item.rubric }}"}]},
            ],
        },
        "c": {"type": "python", "name": "c", "source": "def grade(s, i): return '{{ item.no }}'"},
    },
}


def test_grader_templates_walks_multi_and_messages_but_not_python_source():
    fields = dict(grader_templates(MULTI))
    assert set(fields) == {
        "graders.a.input",
        "graders.a.reference",
        "graders.b.input[0].content",
        "graders.b.input[1].content[0].text",
    }


def test_check_template_fields_reports_missing_item_paths_only():
    row = {"answer": "x", "meta": {}}
    assert check_template_fields(MULTI, row) == ["item.meta.source", "item.rubric"]
    full = {"answer": "x", "meta": {"source": "s"}, "rubric": "r"}
    assert check_template_fields(MULTI, full) == []


# Property: a path built from a random JSON document renders the value found by walking
# the document directly (strings verbatim, other values as JSON).
keys = st.from_regex(r"[a-z_][a-z0-9_]{0,4}", fullmatch=True)
json_leaves = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5)
json_docs = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, min_size=1, max_size=3)
    | st.dictionaries(keys, inner, min_size=1, max_size=3),
    max_leaves=10,
)


@st.composite
def document_and_path(draw):
    doc = draw(st.dictionaries(keys, json_docs, min_size=1, max_size=3))
    value, text = doc, "item"
    while True:
        if isinstance(value, dict) and value and draw(st.booleans()) or text == "item":
            key = draw(st.sampled_from(sorted(value)))
            value, text = value[key], f"{text}.{key}"
        elif isinstance(value, list) and draw(st.booleans()):
            index = draw(st.integers(0, len(value) - 1))
            value, text = value[index], f"{text}[{index}]"
        else:
            return doc, text, value


@settings(max_examples=200, deadline=None)
@given(document_and_path())
def test_random_paths_render_the_value_they_point_at(case):
    doc, path, value = case
    as_json = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    expected = value if isinstance(value, str) else as_json
    assert render("<{{ " + path + " }}>", doc, {}) == f"<{expected}>"
