"""The python grader's contract: source checks, results, errors, batching, infrastructure."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import pytest

from openrft.errors import GraderUnavailable, InvalidInput
from openrft.graders import build_grader, run
from openrft.graders.python_grader import PythonGraderImpl
from openrft.graders.sandbox import SandboxLimits
from openrft.graders.schema import PythonGrader

RUNTIME = "python_grader_runtime_error"
SERVER = "python_grader_server_error"
LIMITS = SandboxLimits(wall_timeout_s=10, startup_timeout_s=10)


def make(source: str, limits: SandboxLimits = LIMITS) -> PythonGraderImpl:
    return PythonGraderImpl(PythonGrader(type="python", name="g", source=source), limits)


def returning(expression: str) -> PythonGraderImpl:
    return make(f"import math\ndef grade(sample, item):\n    return {expression}\n")


# --- build-time checks: ast only -------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def grade(sample, item)\n    return 1\n", "line 1: syntax error: expected ':'"),
        ("x = 1\n\ndef grade(sample, item):\n  return (\n", "line 4: syntax error: '('"),
        ("def score(sample, item):\n    return 1\n", ": must define a top-level function"),
        ("class A:\n    def grade(self, s, i):\n        return 1\n", ": must define a top-level"),
        ("def grade(sample):\n    return 1\n", "line 1: `grade` must take exactly two"),
        ("\ndef grade(a, b, c):\n    return 1\n", "line 2: `grade` must take exactly two"),
        ("def grade(*args):\n    return 1\n", "line 1: `grade` must take exactly two"),
        ("def grade(s, i, *, k=1):\n    return 1\n", "line 1: `grade` must take exactly two"),
        ("def grade(s, i, **kw):\n    return 1\n", "not (s, i, **kw)"),
        ("async def grade(s, i):\n    return 1\n", "line 1: `grade` must be a plain function"),
        ("def grade(s, i):\n    return 1\ndef grade(s):\n    return 2\n", "line 3: `grade` must"),
    ],
)
def test_bad_sources_are_rejected_with_their_line(source: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        build_grader({"type": "python", "name": "mine", "source": source})
    assert caught.value.location == "grader.source"
    assert caught.value.message.startswith("python grader 'mine'")
    assert problem in caught.value.message


def test_building_never_executes_the_source(tmp_path: Path) -> None:
    created = tmp_path / "created-at-build.txt"
    source = f"open({str(created)!r}, 'w').write('ran')\ndef grade(sample, item):\n    return 1\n"
    build_grader({"type": "python", "name": "g", "source": source})
    assert not created.exists()


def test_missing_bubblewrap_is_a_clear_build_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no bwrap anywhere
    with pytest.raises(GraderUnavailable, match="apt-get install bubblewrap"):
        make("def grade(sample, item):\n    return 1\n")


# --- grading ---------------------------------------------------------------------------


def test_grade_receives_the_sample_and_item_and_scores() -> None:
    source = """
def grade(sample, item):
    score = 1.0 if sample["output_text"].strip() == item["answer"] else 0.0
    return {"score": score, "metadata": {"sample": sample, "item": item}}
"""
    sample = {"output_text": " BRCA1 ", "output_json": {"genes": ["BRCA1"]}}
    item = {"answer": "BRCA1", "nested": {"k": [1, 2.5, None, "ü"]}}
    result = make(source).grade(sample, item)
    assert result.ok and result.score == 1.0
    assert result.metadata == {"sample": sample, "item": item}
    assert (result.name, result.type) == ("g", "python")
    assert make(source).grade({"output_text": "TP53"}, item).score == 0.0


def test_run_through_the_registry() -> None:
    grader = {"type": "python", "name": "len", "source": "def grade(s, i):\n    return 0.25\n"}
    result = run(grader, {"output_text": "abc"}, {})
    assert result.ok and result.score == 0.25


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("0.75", 0.75), ("1", 1.0), ("-2", -2.0), ("__import__('fractions').Fraction(1, 4)", 0.25)],
)
def test_numbers_are_accepted(expression: str, expected: float) -> None:
    result = returning(expression).grade({}, {})
    assert result.ok and result.score == expected and result.metadata == {}


def test_numpy_scalars_are_accepted() -> None:
    result = returning("__import__('numpy').float32(0.5)").grade({}, {})
    assert result.ok and result.score == 0.5


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("float('nan')", "grade() returned nan; the score must be finite"),
        ("math.inf", "grade() returned inf; the score must be finite"),
        ("'0.5'", "grade() result must be a number, got str: 0.5"),
        ("None", "grade() result must be a number, got NoneType"),
        ("[1.0]", "grade() result must be a number, got list"),
        ("True", "grade() result must be a number, got bool"),
        ("{'score': '1'}", "'score' must be a number, got str"),
        ("{'value': 1}", "a dict result must have keys 'score' and optional 'metadata'"),
        ("{'score': 1, 'extra': 2}", "got ['extra', 'score']"),
        ("{'score': 1, 'metadata': [1]}", "'metadata' must be a dict, got list"),
        ("{'score': 1, 'metadata': {'x': {1, 2}}}", "'metadata' is not JSON-serialisable"),
        ("{'score': 1, 'metadata': {'x': math.nan}}", "'metadata' is not JSON-serialisable"),
        ("{'score': math.nan, 'metadata': {}}", "grade() returned nan"),
    ],
)
def test_invalid_results_score_zero_with_a_runtime_error(expression: str, message: str) -> None:
    result = returning(expression).grade({}, {})
    assert result.score == 0.0 and result.metadata == {}
    assert [e.code for e in result.errors] == [RUNTIME]
    assert message in result.errors[0].message


def test_an_oversized_answer_is_refused() -> None:
    result = returning("{'score': 1.0, 'metadata': {'blob': 'x' * 5 * 1024**2}}").grade({}, {})
    assert result.score == 0.0 and result.errors[0].code == RUNTIME
    assert result.errors[0].message == "grade() result exceeds 4194304 bytes"


def test_exceptions_report_type_message_and_user_line() -> None:
    source = """import math

def helper(value):
    return math.sqrt(value)

def grade(sample, item):
    return helper(-1)
"""
    result = make(source).grade({}, {})
    assert result.score == 0.0 and [e.code for e in result.errors] == [RUNTIME]
    assert result.errors[0].message == "ValueError: math domain error (line 4 of the grader source)"


def test_sys_exit_in_grade_is_a_runtime_error() -> None:
    result = make("import sys\ndef grade(sample, item):\n    sys.exit(3)\n").grade({}, {})
    assert result.errors[0].code == RUNTIME
    assert result.errors[0].message == "SystemExit: 3 (line 3 of the grader source)"


def test_a_failing_top_level_fails_every_sample() -> None:
    source = "import not_a_real_module\ndef grade(sample, item):\n    return 1\n"
    results = make(source).grade_many([{}, {}, {}], [{}, {}, {}])
    expected = (
        "loading the grader source failed: ModuleNotFoundError: "
        "No module named 'not_a_real_module' (line 1 of the grader source)"
    )
    assert [(r.score, r.errors[0].code, r.errors[0].message) for r in results] == [
        (0.0, RUNTIME, expected)
    ] * 3


def test_a_top_level_infinite_loop_hits_the_wall_clock() -> None:
    limits = SandboxLimits(wall_timeout_s=1, startup_timeout_s=2, cpu_seconds=60)
    result = make("while True:\n    pass\ndef grade(s, i):\n    return 1\n", limits).grade({}, {})
    assert result.errors[0].code == RUNTIME
    assert (
        result.errors[0].message
        == "loading the grader source timed out after the 1 s wall-clock limit"
    )


def test_prints_and_stdin_reads_do_not_corrupt_the_protocol() -> None:
    source = """
import os, sys
def grade(sample, item):
    print('{"score": 0.0, "metadata": {}}')
    print("x" * 200_000)
    print("noise", file=sys.stderr)
    os.write(1, b'{"score": 0.0}\\n')
    stolen = sys.stdin.read()
    return {"score": float(sample["output_text"]), "metadata": {"stolen": stolen}}
"""
    samples = [{"output_text": str(v)} for v in (0.1, 0.2, 0.3)]
    results = make(source).grade_many(samples, [{}, {}, {}], max_concurrency=1)
    assert [(r.ok, r.score, r.metadata) for r in results] == [
        (True, v, {"stolen": ""}) for v in (0.1, 0.2, 0.3)
    ]


# --- batching --------------------------------------------------------------------------

COUNTING = """
import os, time
calls = 0
def grade(sample, item):
    global calls
    calls += 1
    if sample["output_text"] == "crash":
        os._exit(7)
    if sample["output_text"] == "hang":
        time.sleep(60)
    return {"score": 1.0, "metadata": {"calls": calls}}
"""


def test_one_sandbox_grades_the_batch_and_a_crash_restarts_it() -> None:
    texts = ["ok", "ok", "crash", "ok", "ok"]
    results = make(COUNTING).grade_many([{"output_text": t} for t in texts], [{}] * 5, 1)
    assert [r.metadata.get("calls") for r in results] == [1, 2, None, 1, 2]
    assert [r.score for r in results] == [1.0, 1.0, 0.0, 1.0, 1.0]
    crash = results[2].errors[0]
    assert crash.code == RUNTIME
    assert crash.message == "the sandbox process died during grade() (exit code 7)"


def test_a_timed_out_call_fails_alone() -> None:
    limits = SandboxLimits(wall_timeout_s=1, startup_timeout_s=10)
    texts = ["ok", "hang", "ok"]
    results = make(COUNTING, limits).grade_many([{"output_text": t} for t in texts], [{}] * 3, 1)
    assert [r.metadata.get("calls") for r in results] == [1, None, 1]
    assert results[1].errors[0].message == "grade() timed out after the 1 s wall-clock limit"
    assert results[1].latency_s < 3


def test_grade_many_keeps_the_order_across_parallel_sandboxes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 6)  # room for three sandboxes of 2 CPUs
    source = "def grade(sample, item):\n    return sample['v'] * 2 + item['w']\n"
    samples, items = [{"v": v} for v in range(10)], [{"w": 100 * w} for w in range(10)]
    results = make(source).grade_many(samples, items, max_concurrency=8)
    assert [r.score for r in results] == [v * 2 + 100 * v for v in range(10)]


def test_an_unserialisable_sample_fails_alone() -> None:
    results = returning("1.0").grade_many([{"x": 1}, {"x": {1, 2}}, {"x": 3}], [{}, {}, {}], 1)
    assert [r.score for r in results] == [1.0, 0.0, 1.0]
    assert results[1].errors[0].code == "sample_parse_error"


# --- infrastructure failures -----------------------------------------------------------


def test_bubblewrap_vanishing_after_build_is_a_server_error() -> None:
    grader = returning("1.0")
    grader.bwrap = "/nonexistent/bwrap"
    result = grader.grade({}, {})
    assert result.score == 0.0 and result.errors[0].code == SERVER
    assert "could not start bubblewrap (/nonexistent/bwrap)" in result.errors[0].message


def test_bubblewrap_refusing_to_sandbox_is_a_server_error(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"  # what an unprivileged container without user namespaces says
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    grader = returning("1.0")
    grader.bwrap = str(fake)
    results = grader.grade_many([{}, {}], [{}, {}], 1)
    for result in results:
        assert result.score == 0.0 and result.errors[0].code == SERVER
        assert result.errors[0].message == (
            "bubblewrap could not create the sandbox: "
            "bwrap: No permissions to creating new namespace"
        )


def test_limits_the_sandbox_cannot_apply_are_a_server_error() -> None:
    grader = make("def grade(s, i):\n    return 1\n", SandboxLimits(max_open_files=10**9))
    result = grader.grade({}, {})
    assert result.errors[0].code == SERVER
    assert result.errors[0].message.startswith("the sandbox could not apply its limits")


# --- configuration ---------------------------------------------------------------------


def test_limits_default_to_openai_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = SandboxLimits()
    assert (defaults.wall_timeout_s, defaults.memory_bytes, defaults.disk_bytes) == (
        120.0,
        2 * 1024**3,
        1024**3,
    )
    assert defaults.cpus == 2 and defaults.cpu_seconds_per_call == 240
    monkeypatch.setenv("OPENRFT_PYTHON_GRADER_WALL_TIMEOUT_S", "2.5")
    monkeypatch.setenv("OPENRFT_PYTHON_GRADER_MEMORY_BYTES", "1000000")
    limits = SandboxLimits.from_env()
    assert (limits.wall_timeout_s, limits.memory_bytes) == (2.5, 1_000_000)
    assert limits.cpu_seconds_per_call == math.ceil(2.5 * 2)
    monkeypatch.setenv("OPENRFT_PYTHON_GRADER_MAX_PROCESSES", "many")
    with pytest.raises(
        InvalidInput, match="OPENRFT_PYTHON_GRADER_MAX_PROCESSES: expected an integer"
    ):
        SandboxLimits.from_env()


def test_pass_threshold_marks_passed_and_keeps_the_score():
    # OpenAI's evals python grader (and Azure's RFT examples) carry pass_threshold
    source = "def grade(sample, item):\n    return float(sample['output_text'])\n"
    grader = {"type": "python", "source": source, "pass_threshold": 0.5}
    high, low = run(grader, {"output_text": "0.75"}, {}), run(grader, {"output_text": "0.25"}, {})
    assert (high.score, high.metadata["passed"]) == (0.75, True)
    assert (low.score, low.metadata["passed"]) == (0.25, False)
    impl = build_grader(grader)
    batch = impl.grade_many([{"output_text": "0.5"}, {"output_text": "0.1"}], [{}, {}])
    assert [(r.score, r.metadata["passed"]) for r in batch] == [(0.5, True), (0.1, False)]
    impl.close()
