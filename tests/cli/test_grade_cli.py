"""`openrft grade` / `openrft grader validate` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import openrft

GRADER = {
    "type": "multi",
    "name": "capital",
    "graders": {
        "exact": {
            "type": "string_check",
            "name": "exact",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "ilike",
        },
        "overlap": {
            "type": "text_similarity",
            "name": "overlap",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "evaluation_metric": "rouge_1",
        },
    },
    "calculate_output": "0.5 * exact + 0.5 * overlap",
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    grader = write(tmp_path / "grader.json", json.dumps(GRADER))
    rows = write(
        tmp_path / "rows.jsonl",
        '{"answer": "Paris"}\n{"answer": "New Delhi"}\n\n{"answer": "Rome"}\n',
    )
    # plain strings and objects may be mixed
    samples = write(
        tmp_path / "samples.jsonl",
        '"paris"\n{"output_text": "delhi"}\n{"output_text": "Madrid", "output_json": {"a": 1}}\n',
    )
    return grader, rows, samples




def test_grade_json_output(files, monkeypatch, capsys):
    grader, rows, samples = files
    code, out, err = openrft(
        monkeypatch, capsys, "grade", "--grader", grader, "--data", rows, "--samples", samples,
        "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    # row 1: ilike 1, rouge_1("paris", "Paris") 1 -> 1.0
    # row 2: "delhi" in "New Delhi" is ilike the wrong way round (input must contain
    #        the reference) -> 0; rouge_1 P 1/1, R 1/2 -> F 2/3 -> 1/3
    # row 3: 0 and 0 -> 0
    scores = [row["score"] for row in report["rows"]]
    assert scores == pytest.approx([1.0, 1 / 3, 0.0])
    assert [row["line"] for row in report["rows"]] == [1, 2, 4]
    assert report["rows"][1]["sub_scores"] == pytest.approx({"exact": 0.0, "overlap": 2 / 3})
    summary = report["summary"]
    mean = (1 + 1 / 3) / 3
    assert summary["mean"] == pytest.approx(mean)
    std = (((1 - mean) ** 2 + (1 / 3 - mean) ** 2 + mean**2) / 3) ** 0.5
    assert summary["std"] == pytest.approx(std)
    assert (summary["min"], summary["max"], summary["errors"], summary["count"]) == (0, 1, 0, 3)
    assert summary["mean_latency_s"] > 0


def test_grade_table_output(files, monkeypatch, capsys):
    grader, rows, samples = files
    code, out, _ = openrft(
        monkeypatch, capsys, "grade", "--grader", grader, "--data", rows, "--samples", samples
    )
    assert code == 0
    assert "exact=0.000, overlap=0.667" in out
    assert "0.3333" in out
    assert "mean 0.4444" in out and "errors 0/3" in out


def test_grade_reports_row_errors_in_table(tmp_path, monkeypatch, capsys):
    grader = write(
        tmp_path / "g.json",
        json.dumps({**GRADER, "calculate_output": "overlap / exact"}),
    )
    rows = write(tmp_path / "rows.jsonl", '{"answer": "a"}\n')
    samples = write(tmp_path / "samples.jsonl", '"b"\n')
    code, out, _ = openrft(
        monkeypatch, capsys, "grade", "--grader", grader, "--data", rows, "--samples", samples,
        "--json",
    )  # fmt: skip
    assert code == 0
    row = json.loads(out)["rows"][0]
    assert row["score"] == 0.0
    assert row["errors"][0]["code"] == "formula_parse_error"
    assert json.loads(out)["summary"]["errors"] == 1


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_grader", "grader.json: file not found"),
        ("bad_grader_json", "grader.json:2: invalid JSON"),
        ("bad_grader_field", "grader.json: grader.graders.exact.operation:"),
        ("bad_formula", "grader.json: grader.calculate_output: formula"),
        ("bad_rows_json", "rows.jsonl:3: invalid JSON"),
        ("row_not_object", "rows.jsonl:1: expected a JSON object, got an array"),
        ("sample_not_text", "samples.jsonl:2: field 'output_text' must be a string"),
        ("count_mismatch", "samples.jsonl: 2 samples but 3 rows in"),
        ("row_missing_field", "rows.jsonl:2: row lacks item.answer that the grader references"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(case, expected, files, monkeypatch, capsys):
    grader, rows, samples = files
    if case == "missing_grader":
        grader.unlink()
    elif case == "bad_grader_json":
        write(grader, '{\n  "type": "multi",,\n}')
    elif case == "bad_grader_field":
        bad = json.loads(json.dumps(GRADER))
        bad["graders"]["exact"]["operation"] = "contains"
        write(grader, json.dumps(bad))
    elif case == "bad_formula":
        write(grader, json.dumps({**GRADER, "calculate_output": "__import__('os')"}))
    elif case == "bad_rows_json":
        write(rows, '{"answer": "a"}\n\n{"answer": \n')
    elif case == "row_not_object":
        write(rows, '["a"]\n')
    elif case == "sample_not_text":
        write(samples, '"a"\n{"output_text": 3}\n"c"\n')
    elif case == "count_mismatch":
        write(samples, '"a"\n"b"\n')
    elif case == "row_missing_field":
        write(rows, '{"answer": "a"}\n{"answr": "b"}\n{"answer": "c"}\n')
    code, out, err = openrft(
        monkeypatch, capsys, "grade", "--grader", grader, "--data", rows, "--samples", samples
    )
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and out == ""


def test_validate_ok_prints_summary(files, monkeypatch, capsys):
    grader, _, _ = files
    code, out, _ = openrft(monkeypatch, capsys, "grader", "validate", grader)
    assert code == 0
    assert out.startswith("OK ")
    assert "multi grader 'capital'" in out
    assert "calculate_output: 0.5 * exact + 0.5 * overlap" in out
    assert "references: item.answer, sample.output_text" in out


def test_validate_json_echoes_normalized_grader(tmp_path, monkeypatch, capsys):
    # The API body form {"grader": {...}} is accepted too.
    path = write(tmp_path / "g.json", json.dumps({"grader": GRADER["graders"]["exact"]}))
    code, out, _ = openrft(monkeypatch, capsys, "grader", "validate", path, "--json")
    assert code == 0
    assert json.loads(out) == {"grader": GRADER["graders"]["exact"]}


def test_validate_bad_field_exit_2(tmp_path, monkeypatch, capsys):
    path = write(tmp_path / "g.json", json.dumps({"type": "string_check", "name": "x"}))
    code, _, err = openrft(monkeypatch, capsys, "grader", "validate", path)
    assert code == 2
    assert f"{path}: grader.input: Field required" in err


def test_installed_entry_point_has_no_traceback(tmp_path):
    script = Path(sys.executable).parent / "openrft"
    path = write(tmp_path / "g.json", '{"type": "string_check"')
    proc = subprocess.run(
        [str(script), "grader", "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "g.json:1: invalid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sample_output_json_null_is_absent_and_parsed_from_text(tmp_path, monkeypatch, capsys):
    grader = write(
        tmp_path / "g.json",
        json.dumps(
            {
                "type": "string_check",
                "name": "verdict",
                "input": "{{ sample.output_json.verdict }}",
                "reference": "{{ item.verdict }}",
                "operation": "eq",
            }
        ),
    )
    rows = write(tmp_path / "rows.jsonl", '{"verdict": "yes"}\n{"verdict": "yes"}\n')
    samples = write(
        tmp_path / "samples.jsonl",
        '{"output_text": "{\\"verdict\\": \\"yes\\"}", "output_json": null}\n'
        '"{\\"verdict\\": \\"no\\"}"\n',
    )
    code, out, err = openrft(
        monkeypatch, capsys, "grade", "--grader", grader, "--data", rows, "--samples", samples,
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert [row["score"] for row in json.loads(out)["rows"]] == [1.0, 0.0]
