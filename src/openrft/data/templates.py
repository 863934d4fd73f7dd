"""OpenAI grader templating: `{{ item.field }}` and `{{ sample.output_json.a[0].b }}`.

A template string holds tags `{{ namespace.path }}`; the namespace is `item` (the dataset
row) or `sample` (the model's output: `output_text`, `output_json`, ...), and the path is
fields (`.name` or `["odd key"]`) and list indices (`[2]`), whitespace tolerated around
every part. This is a substitution syntax, not a language: a regex finds the tags and a
second regex splits the path, nothing is evaluated.

Rendering rule: a string value is inserted verbatim; anything else (numbers, booleans,
null, objects, lists) as compact JSON, so `true`/`false`/`null` read the way the row
spelled them and `{{ item.n }}` with `n = 3` renders `3`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openrft.errors import InvalidInput

NAMESPACES = ("item", "sample")

# A tag: `{{` ... `}}` with no braces inside (so `{{{` never swallows its neighbours).
_TAG = re.compile(r"\{\{([^{}]*)\}\}")
# One path step after the namespace: `.field`, `[3]`, `["key"]` or `['key']`.
_STEP = re.compile(
    r"""\s*(?:
        \.\s*(?P<field>[^\s.\[\]{}"']+)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<quote>["'])(?P<key>.*?)(?P=quote)\s*\]
    )""",
    re.VERBOSE,
)
_NAMESPACE = re.compile(r"\s*(?P<namespace>[A-Za-z_]\w*)")


@dataclass(frozen=True)
class TemplatePath:
    """A parsed tag: its namespace and the steps (field names or list indices)."""

    namespace: str
    steps: tuple[str | int, ...]
    text: str  # the tag as written, e.g. "{{ item.answer }}"

    @property
    def dotted(self) -> str:
        """The path in canonical form, e.g. `sample.output_tools[0].function.name`."""
        return self.namespace + "".join(_format_step(step) for step in self.steps)


def _format_step(step: str | int) -> str:
    if isinstance(step, int):
        return f"[{step}]"
    return f".{step}" if re.fullmatch(r"[^\s.\[\]{}\"']+", step) else f"[{json.dumps(step)}]"


def parse_tag(inner: str, tag_text: str) -> TemplatePath:
    """Parse the inside of one `{{ ... }}`; InvalidInput naming the tag when malformed."""
    where = f"template {tag_text}"
    head = _NAMESPACE.match(inner)
    if head is None:
        raise InvalidInput(where, "expected `namespace.field` with namespace item or sample")
    namespace = head.group("namespace")
    if namespace not in NAMESPACES:
        raise InvalidInput(where, f"unknown namespace '{namespace}' (only item and sample)")
    steps: list[str | int] = []
    position = head.end()
    while position < len(inner.rstrip()):
        step = _STEP.match(inner, position)
        if step is None:
            rest = inner[position:].strip()
            raise InvalidInput(where, f"cannot parse path at '{rest}'")
        if step.group("field") is not None:
            steps.append(step.group("field"))
        elif step.group("index") is not None:
            steps.append(int(step.group("index")))
        else:
            steps.append(step.group("key"))
        position = step.end()
    if not steps:
        raise InvalidInput(where, f"needs a variable after the namespace, e.g. {namespace}.field")
    return TemplatePath(namespace, tuple(steps), tag_text)


def _tags(template: str) -> Iterator[tuple[re.Match[str], TemplatePath]]:
    for match in _TAG.finditer(template):
        yield match, parse_tag(match.group(1), match.group(0))


def template_paths(template: str) -> list[TemplatePath]:
    """Every tag a template references, in order (InvalidInput on a malformed tag)."""
    return [path for _, path in _tags(template)]


def validate_template(template: str, field: str) -> None:
    """Raise InvalidInput(field, "template {{ x }}: ...") when a tag is malformed.

    Graders call this when built, so a bad tag is reported at validation time with the
    grader field it sits in (e.g. `grader.input`), not on the first sample.
    """
    try:
        template_paths(template)
    except InvalidInput as exc:
        raise InvalidInput(field, str(exc)) from None


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def resolve(path: TemplatePath, namespaces: dict[str, Any]) -> Any:
    """The value a path points at; InvalidInput "template {{ x }}: item has no field 'y'"."""
    where = f"template {path.text}"
    value = namespaces[path.namespace]
    walked = path.namespace
    for step in path.steps:
        if isinstance(step, int):
            if not isinstance(value, list):
                raise InvalidInput(where, f"{walked} is {_describe(value)}, not a list")
            if not -len(value) <= step < len(value):
                raise InvalidInput(where, f"{walked} has no index {step} (length {len(value)})")
            value = value[step]
        else:
            if not isinstance(value, dict):
                raise InvalidInput(where, f"{walked} is {_describe(value)}, not an object")
            if step not in value:
                raise InvalidInput(where, f"{walked} has no field '{step}'")
            value = value[step]
        walked += _format_step(step)
    return value


def render_value(value: Any) -> str:
    """Strings verbatim; everything else as compact JSON (true, 3, 1.5, null, {...})."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def render(template: str, item: dict[str, Any], sample: dict[str, Any]) -> str:
    """Substitute every tag of `template` with its value from `item` / `sample`."""
    namespaces = {"item": item, "sample": sample}
    pieces: list[str] = []
    position = 0
    for match, path in _tags(template):
        pieces.append(template[position : match.start()])
        pieces.append(render_value(resolve(path, namespaces)))
        position = match.end()
    pieces.append(template[position:])
    return "".join(pieces)


def make_sample(output_text: str, output_json: Any = None) -> dict[str, Any]:
    """The `sample` namespace for a model output (OpenAI graders/run: `model_sample`).

    `output_json` is filled from the text when it parses as a JSON object or array
    and none is given, as OpenAI does for `graders/run`.
    """
    sample: dict[str, Any] = {"output_text": output_text}
    if output_json is None:
        try:
            parsed = json.loads(output_text)
        except (json.JSONDecodeError, RecursionError):
            parsed = None
        if isinstance(parsed, dict | list):
            output_json = parsed
    if output_json is not None:
        sample["output_json"] = output_json
    return sample


# Grader fields that hold templates, by grader type (OpenAI graders guide).
_TEMPLATED_FIELDS: dict[str, tuple[str, ...]] = {
    "string_check": ("input", "reference"),
    "text_similarity": ("input", "reference"),
}
_MESSAGE_GRADERS = ("score_model", "label_model")


def grader_templates(grader: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, template text) for every templated field of a grader dict.

    Works on the raw/dumped grader dict (`spec.model_dump()`), recursing into `multi`.
    """
    kind = str(grader.get("type", ""))
    found: list[tuple[str, str]] = []
    for name in _TEMPLATED_FIELDS.get(kind, ()):
        if isinstance(grader.get(name), str):
            found.append((name, grader[name]))
    if kind in _MESSAGE_GRADERS:
        for index, message in enumerate(grader.get("input") or []):
            for where, text in _message_texts(message):
                found.append((f"input[{index}].{where}", text))
    if kind == "multi":
        for key, sub in (grader.get("graders") or {}).items():
            if isinstance(sub, dict):
                found.extend((f"graders.{key}.{where}", t) for where, t in grader_templates(sub))
    return found


def _message_texts(message: Any) -> list[tuple[str, str]]:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [("content", content)]
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return [("content.text", content["text"])]
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if isinstance(part, str):
                texts.append((f"content[{index}]", part))
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append((f"content[{index}].text", part["text"]))
        return texts
    return []


def check_template_fields(grader: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """The `item.*` paths a grader references that `row` does not have (empty: all there).

    Lets a service or dataset loader reject a dataset/grader pair before training,
    naming the row and the missing path. `sample.*` paths are not checked: they exist
    only once the model has answered.
    """
    missing: list[str] = []
    for _, template in grader_templates(grader):
        for path in template_paths(template):
            if path.namespace != "item" or path.dotted in missing:
                continue
            try:
                resolve(path, {"item": row, "sample": {}})
            except InvalidInput:
                missing.append(path.dotted)
    return missing
