"""calculate_output formulas: hand-checked precedence, a structural reference evaluator
under hypothesis, and hostile text that must be rejected without ever running."""

from __future__ import annotations

import ast
import builtins
import math
import operator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrft.errors import InvalidInput
from openrft.graders.base import ScoringError
from openrft.graders.formula import parse_formula

NAMES = ("a", "b", "function_name")
VALUES = {"a": 0.5, "b": 0.25, "function_name": 1.0}


def evaluate(text: str, values: dict[str, float] = VALUES) -> float:
    return parse_formula(text, values.keys()).evaluate(values)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5 * function_name + 0.5 * a", 0.75),
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("2 ^ 3 ^ 2", 512.0),  # ^ is power and right-associative: 2^(3^2)
        ("2 * 3 ^ 2", 18.0),  # power binds tighter than *
        ("-2 ^ 2", -4.0),  # and tighter than unary minus, as in maths
        ("a ** 2", 0.25),  # Python spelling of power accepted too
        ("7 / 2", 3.5),  # true division
        ("min(a, b) + max(a, b, 0.9)", 1.15),
        ("max(a)", 0.5),
        ("abs(b - a)", 0.25),
        ("floor(2.7) + ceil(2.1)", 5.0),
        ("exp(0) + sqrt(16) + log(1)", 5.0),
        ("a >= 0.5", 1.0),
        ("a > 0.5", 0.0),
        ("a == 0.5", 1.0),
        ("a != 0.5", 0.0),
        ("0 < b < a", 1.0),  # chained like Python / maths
        ("0.5 * (a >= 0.5) + 0.5 * (b >= 0.5)", 0.5),
        ("  a  ", 0.5),
        ("1e-3 * 1000", 1.0),
    ],
)
def test_hand_computed_values(text, expected):
    assert evaluate(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 / (a - a)", "division by zero"),
        ("log(0)", "math domain error"),
        ("sqrt(-1)", "math domain error"),
        ("(-8) ^ (1 / 3)", "negative number to a fractional power"),
        ("10 ^ 10 ^ 10", "overflow"),
        ("exp(1000)", "overflow"),
        ("1e308 * 10", "inf"),
    ],
)
def test_math_errors_are_formula_errors(text, message):
    formula = parse_formula(text, NAMES)  # valid grammar: accepted when built
    with pytest.raises(ScoringError) as info:
        formula.evaluate(VALUES)
    assert info.value.code == "formula_parse_error"
    assert message in info.value.message


# ---------------------------------------------------------------------------------
# Property: random arithmetic structures, rendered to text, evaluate like an
# independent evaluator that applies Python float arithmetic to the structure itself.

BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
FUNCTIONS = {
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}

numbers = st.floats(min_value=0, max_value=100, allow_nan=False).map(lambda x: ("num", x))
leaves = numbers | st.sampled_from(NAMES).map(lambda name: ("var", name))


def _extend(children):
    return st.one_of(
        st.tuples(st.just("bin"), st.sampled_from(sorted(BINARY)), children, children),
        st.tuples(st.just("pow"), children, children),
        st.tuples(st.just("cmp"), st.sampled_from(sorted(COMPARE)), children, children),
        st.tuples(st.just("neg"), children),
        st.tuples(st.just("call"), st.sampled_from(sorted(FUNCTIONS)), children),
        st.tuples(
            st.just("minmax"),
            st.sampled_from(["min", "max"]),
            st.lists(children, min_size=1, max_size=3),
        ),
    )


expressions = st.recursive(leaves, _extend, max_leaves=12)


def render(node) -> str:
    kind = node[0]
    if kind == "num":
        return repr(node[1])
    if kind == "var":
        return node[1]
    if kind in ("bin", "cmp"):
        return f"({render(node[2])} {node[1]} {render(node[3])})"
    if kind == "pow":
        return f"({render(node[1])} ^ {render(node[2])})"
    if kind == "neg":
        return f"(-{render(node[1])})"
    if kind == "call":
        return f"{node[1]}({render(node[2])})"
    return f"{node[1]}({', '.join(render(arg) for arg in node[2])})"


def reference(node) -> float:
    """Independent evaluation of the structure; raises ArithmeticError/ValueError."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        return VALUES[node[1]]
    if kind == "bin":
        return BINARY[node[1]](reference(node[2]), reference(node[3]))
    if kind == "cmp":
        return 1.0 if COMPARE[node[1]](reference(node[2]), reference(node[3])) else 0.0
    if kind == "pow":
        result = reference(node[1]) ** reference(node[2])
        if isinstance(result, complex):
            raise ValueError("complex")
        return result
    if kind == "neg":
        return -reference(node[1])
    if kind == "call":
        return float(FUNCTIONS[node[1]](reference(node[2])))
    values = [reference(arg) for arg in node[2]]
    return min(values) if node[1] == "min" else max(values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions)
def test_random_formulas_match_reference_evaluator(node):
    text = render(node)
    formula = parse_formula(text, NAMES)
    try:
        expected = reference(node)
        expected_ok = math.isfinite(expected)
    except (ArithmeticError, ValueError):
        expected_ok = False
    if expected_ok:
        assert formula.evaluate(VALUES) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    else:
        with pytest.raises(ScoringError):
            formula.evaluate(VALUES)


# ---------------------------------------------------------------------------------
# Hostile input: rejected at parse time, and nothing ever executes.

ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name, ast.Constant,
    ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq,
)  # fmt: skip


def hostile(marker) -> list[str]:
    path = str(marker)
    return [
        f"__import__('os').system('touch {path}')",
        f"open('{path}', 'w')",
        f"exec(\"open('{path}', 'w')\")",
        f"eval(\"open('{path}', 'w')\")",
        f"compile(\"open('{path}', 'w')\", 'x', 'exec')",
        "().__class__.__bases__[0].__subclasses__()",
        "().__class__",
        "a.__class__",
        f"lambda: open('{path}', 'w')",
        f"f\"{{open('{path}', 'w')}}\"",
        f"(a := open('{path}', 'w'))",
        f"[open('{path}', 'w') for _ in a]",
        f"max(open('{path}', 'w'))",
        f"max(a, key=open('{path}', 'w'))",
        f"min(*[open('{path}', 'w')])",
        f"a if open('{path}', 'w') else b",
        f"a and open('{path}', 'w')",
        "a[0]",
        "{'x': 1}",
        "'string'",
        "b'bytes'",
        "True + 1",
        "None",
        "...",
        "c + 1",
        "a % 2",
        "a // 2",
        "a @ b",
        "a << 1",
        "~a",
        "not a",
        "a is b",
        "a in b",
        "import os",
        "a; b",
        "a = 1",
        "\x00",
        "(" * 10_000 + "1" + ")" * 10_000,
        "-" * 10_000 + "1",
        "abs(" * 600 + "a" + ")" * 600,
        "+".join(["a"] * 2500),
    ]


def test_hostile_formulas_rejected_and_never_run(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"

    def forbidden(*args, **kwargs):
        raise AssertionError("user formula reached eval/exec")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    for text in hostile(marker):
        with pytest.raises(InvalidInput) as info:
            parse_formula(text, NAMES, field="grader.calculate_output")
        assert info.value.location == "grader.calculate_output"
        assert len(str(info.value)) < 400, "error messages stay one readable line"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("__import__('os')", "'__import__'"),
        ("().__class__", "attribute access"),
        ("lambda: 1", "lambda"),
        ("f'{a}'", "f-string"),
        ("a[0]", "subscript"),
        ("c + 1", "unknown name 'c'"),
        ("max(a, key=b)", "keyword"),
        ("abs(a, b)", "abs() takes exactly 1 argument(s), got 2"),
        ("'x'", "constant of type str"),
        ("a % 2", "operator %"),
    ],
)
def test_rejection_names_offending_token(text, token):
    with pytest.raises(InvalidInput) as info:
        parse_formula(text, NAMES)
    assert token in info.value.message
    assert "formula" in info.value.message


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab()+-*/^.,_ 019eEx'\"[]{}:;=<>!%@~lambdimportsqrtmaxlog", max_size=40))
def test_garbage_is_rejected_or_only_whitelisted(text):
    try:
        formula = parse_formula(text, NAMES)
    except InvalidInput:
        return
    assert all(isinstance(node, ALLOWED_NODES) for node in ast.walk(formula.tree))
    try:
        value = formula.evaluate(VALUES)
    except ScoringError:
        return
    assert math.isfinite(value)


def test_names_used_and_empty_formula():
    assert parse_formula("a + 2 * a", NAMES).names == {"a"}
    with pytest.raises(InvalidInput, match="empty"):
        parse_formula("   ", NAMES)
