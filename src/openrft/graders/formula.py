"""The `calculate_output` formula of a multi grader: parsed, whitelisted, walked.

Grammar (OpenAI's graders guide): numbers, sub-grader names, `+ - * / ^` (`^` is power),
unary `-`/`+`, parentheses, the functions `min max abs floor ceil exp sqrt log`; we add
comparisons `< <= > >= == !=` that give 1.0 or 0.0 (e.g. `0.5 * (a >= 0.8) + 0.5 * b`).

The text is parsed by Python's `ast` module (mode "eval") after `^` becomes `**`; every
node is checked against a whitelist when the grader is built, and evaluation walks the
checked tree with float arithmetic. The text is never compiled to code, so attribute
access, subscripts, strings, lambdas or unknown names cannot execute; they are rejected
with InvalidInput naming the offending token.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from openrft.errors import InvalidInput
from openrft.graders.base import ScoringError

MAX_FORMULA_CHARS = 4096
MAX_DEPTH = 200  # nested operations; keeps the recursive evaluator far from Python's limit

def _power(base: float, exponent: float) -> float:
    result = base**exponent
    if isinstance(result, complex):  # Python gives (-8) ** (1/3) a complex value
        raise ValueError("negative number to a fractional power")
    return result


_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: _power,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
# name -> (function, min args, max args or None for any)
FUNCTIONS: dict[str, tuple[Callable[..., float], int, int | None]] = {
    "min": (lambda *xs: min(xs), 1, None),
    "max": (lambda *xs: max(xs), 1, None),
    "abs": (abs, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "exp": (math.exp, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "log": (math.log, 1, 1),
}
_OPERATOR_TEXT = {ast.BitXor: "^ (as xor)", ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@"}


@dataclass(frozen=True)
class Formula:
    """A checked formula; `evaluate` maps sub-grader scores to one float."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, values: Mapping[str, float]) -> float:
        """The formula's value; ScoringError("formula_parse_error") on a math error."""
        try:
            result = _evaluate(self.tree.body, values)
        except ZeroDivisionError:
            raise self._error("division by zero") from None
        except OverflowError:
            raise self._error("numeric overflow") from None
        except ValueError as exc:  # math domain errors: sqrt(-1), log(0), floor(nan)
            raise self._error(f"math domain error ({exc})") from None
        if not math.isfinite(result):
            raise self._error(f"result is {result}")
        return float(result)

    def _error(self, message: str) -> ScoringError:
        text = _short(self.text)
        return ScoringError("formula_parse_error", f"calculate_output {text}: {message}")


def parse_formula(
    text: str, variables: Collection[str], field: str = "calculate_output"
) -> Formula:
    """Parse and check `text`; InvalidInput(field, "...offending token...") if not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(field, "formula is empty")
    if len(text) > MAX_FORMULA_CHARS:
        raise InvalidInput(field, f"formula is longer than {MAX_FORMULA_CHARS} characters")
    source = text.replace("^", "**")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise InvalidInput(field, f"formula {_short(text)} is not valid: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise InvalidInput(field, f"formula {_short(text)} is too deeply nested") from None
    checker = _Checker(text, source.strip(), frozenset(variables), field)
    checker.check(tree)
    return Formula(text=text, tree=tree, names=frozenset(checker.names_used))


class _Checker:
    """Walks a parsed formula iteratively and rejects any node outside the whitelist."""

    def __init__(self, text: str, source: str, variables: frozenset[str], field: str) -> None:
        self.text, self.source, self.variables, self.field = text, source, variables, field
        self.names_used: set[str] = set()

    def reject(self, node: ast.AST, what: str) -> InvalidInput:
        token = ast.get_source_segment(self.source, node) or type(node).__name__
        if len(token) > 40:
            token = token[:37] + "..."
        message = f"formula {_short(self.text)}: {what} not allowed: {token!r}"
        return InvalidInput(self.field, message)

    def check(self, tree: ast.Expression) -> None:
        stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise InvalidInput(self.field, f"formula is nested deeper than {MAX_DEPTH}")
            stack.extend((child, depth + 1) for child in self.children(node))

    def children(self, node: ast.AST) -> list[ast.AST]:
        """Check one node; return the sub-expressions still to check."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self.reject(node, f"constant of type {type(node.value).__name__}")
            return []
        if isinstance(node, ast.Name):
            if node.id not in self.variables:
                known = ", ".join(sorted(self.variables)) or "none"
                raise InvalidInput(
                    self.field,
                    f"formula {_short(self.text)}: unknown name {node.id!r} (graders: {known})",
                )
            self.names_used.add(node.id)
            return []
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise self.reject(node, f"operator {_OPERATOR_TEXT.get(type(node.op), '?')}")
            return [node.left, node.right]
        if isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNARY:
                raise self.reject(node, "unary operator")
            return [node.operand]
        if isinstance(node, ast.Compare):
            if any(type(op) not in _COMPARE for op in node.ops):
                raise self.reject(node, "comparison (only < <= > >= == !=)")
            return [node.left, *node.comparators]
        if isinstance(node, ast.Call):
            return self.call_arguments(node)
        raise self.reject(node, _describe(node))

    def call_arguments(self, node: ast.Call) -> list[ast.AST]:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            allowed = ", ".join(FUNCTIONS)
            raise self.reject(node.func, f"function (only {allowed})")
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.reject(node, "keyword or starred argument")
        _, least, most = FUNCTIONS[node.func.id]
        if len(node.args) < least or (most is not None and len(node.args) > most):
            count = f"exactly {least}" if least == most else f"at least {least}"
            raise InvalidInput(
                self.field,
                f"formula {_short(self.text)}: {node.func.id}() takes {count} argument(s), "
                f"got {len(node.args)}",
            )
        return list(node.args)


def _short(text: str, limit: int = 60) -> str:
    """The formula quoted for an error message, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access",
        ast.Subscript: "subscript",
        ast.Lambda: "lambda",
        ast.JoinedStr: "f-string",
        ast.BoolOp: "and/or",
        ast.IfExp: "if/else expression",
        ast.NamedExpr: "assignment expression",
        ast.Tuple: "tuple",
        ast.List: "list",
        ast.Dict: "dict",
        ast.Set: "set",
    }
    for kind, name in names.items():
        if isinstance(node, kind):
            return name
    return f"expression of kind {type(node).__name__}"


def _evaluate(node: ast.AST, values: Mapping[str, float]) -> float:
    """Float arithmetic over a tree that `_Checker` accepted (no other node can appear)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Name):
        return float(values[node.id])
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, values), _evaluate(node.right, values)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values))
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, values)
            if not _COMPARE[type(op)](left, right):
                return 0.0
            left = right
        return 1.0
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        function = FUNCTIONS[node.func.id][0]
        return float(function(*(_evaluate(arg, values) for arg in node.args)))
    raise AssertionError(f"unchecked formula node {type(node).__name__}")
