"""`openrft eval`, `openrft generate`, `openrft preflight` through the real entry point."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml
from cli_runner import openrft

GRADER = {
    "type": "string_check",
    "name": "needle",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.needle }}",
    "operation": "ilike",
}
ROWS = [
    {"messages": [{"role": "user", "content": "What is 1 + 2?"}], "needle": ""},
    {"messages": [{"role": "user", "content": "Name a gene."}], "needle": "e"},
    {"messages": [{"role": "user", "content": "What is 3 * 4?"}], "needle": "zzzzzzzzzzzz"},
]




@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(GRADER))
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return grader, rows


def test_eval_json_summary_agrees_with_the_written_samples(
    files, tiny_model_dir, tmp_path, monkeypatch, capsys
) -> None:
    grader, rows = files
    code, out, err = openrft(
        monkeypatch, capsys, "eval", "--model", tiny_model_dir, "--data", rows, "--grader",
        grader, "--samples", 3, "--max-tokens", 8, "--seed", 5, "--json",
        "--out", tmp_path / "report.json", "--chart", tmp_path / "chart.png",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    full = json.loads((tmp_path / "report.json").read_text())
    assert "rows" not in summary and len(full["rows"]) == 3
    assert (summary["n_rows"], summary["n_samples"]) == (3, 9)
    assert set(summary["pass_at_k"]) == {"1", "2", "3"}
    texts = [[s["output_text"] for s in row["samples"]] for row in full["rows"]]
    rescored = [
        [float(row["needle"] in text.lower()) for text in row_texts]
        for row, row_texts in zip(ROWS, texts, strict=True)
    ]
    assert rescored[0] == [1.0] * 3 and rescored[2] == [0.0] * 3
    flat = [s for r in rescored for s in r]
    assert summary["mean_reward"] == pytest.approx(statistics.fmean(flat))
    assert summary["pass_at_k"]["1"] == pytest.approx(statistics.fmean(flat))
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_prints_a_table(files, tiny_model_dir, monkeypatch, capsys) -> None:
    grader, rows = files
    code, out, err = openrft(
        monkeypatch, capsys, "eval", "--model", tiny_model_dir, "--data", rows, "--grader",
        grader, "--max-tokens", 4,
    )  # fmt: skip
    assert code == 0, err
    assert "mean reward" in out and "pass@1" in out and "top@" not in out


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda g, r, t: ["--data", t / "nope.jsonl", "--grader", g], "nope.jsonl: file not found"),
        (lambda g, r, t: ["--data", r, "--grader", t / "bad.json"], "bad.json:1: invalid JSON"),
        (lambda g, r, t: ["--data", t / "short.jsonl", "--grader", g], "short.jsonl:1"),
    ],
)
def test_eval_bad_input_is_one_line_and_exit_2(
    files, tiny_model_dir, tmp_path, monkeypatch, capsys, make_args, message
) -> None:
    grader, rows = files
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "short.jsonl").write_text(json.dumps({"messages": ROWS[0]["messages"]}) + "\n")
    args = make_args(grader, rows, tmp_path)
    code, out, err = openrft(monkeypatch, capsys, "eval", "--model", tiny_model_dir, *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_eval_rejects_zero_samples(files, tiny_model_dir, monkeypatch, capsys) -> None:
    grader, rows = files
    code, _, err = openrft(
        monkeypatch, capsys, "eval", "--model", tiny_model_dir, "--data", rows, "--grader",
        grader, "--samples", 0,
    )  # fmt: skip
    assert code == 2 and "--samples" in err


def test_generate_json_gives_n_samples_per_prompt(files, tiny_model_dir, monkeypatch, capsys):
    _, rows = files
    code, out, err = openrft(
        monkeypatch, capsys, "generate", "--model", tiny_model_dir, "--data", rows, "--n", 2,
        "--max-tokens", 5, "--seed", 0, "--json",
    )  # fmt: skip
    assert code == 0, err
    records = json.loads(out)
    assert [r["prompt_index"] for r in records] == [0, 0, 1, 1, 2, 2]
    assert all(0 < r["completion_tokens"] <= 5 for r in records)


def test_generate_prompt_prints_the_answer(tiny_model_dir, monkeypatch, capsys) -> None:
    code, out, err = openrft(
        monkeypatch, capsys, "generate", "--model", tiny_model_dir, "--prompt", "What is 1 + 2?",
        "--max-tokens", 3, "--reasoning-effort", "low",
    )  # fmt: skip
    assert code == 0, err
    assert "prompt 0" in out and "tokens" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --prompt or --data"),
        (["--prompt", "hi", "--reasoning-effort", "huge"], "reasoning_effort"),
        (["--prompt", "  "], "--prompt: must not be empty"),
    ],
)
def test_generate_bad_input_exits_2(tiny_model_dir, monkeypatch, capsys, args, message) -> None:
    code, _, err = openrft(monkeypatch, capsys, "generate", "--model", tiny_model_dir, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


IMPOSSIBLE = "0123456789abcdefghijklmnopqrstuvwxyz0123"  # 40 characters


def _config(tmp_path: Path, model: Path, operation: str) -> Path:
    rows = [{"messages": r["messages"], "answer": IMPOSSIBLE} for r in ROWS]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "model": str(model),
        "training_file": "train.jsonl",
        "grader": {
            "type": "string_check",
            "name": "exact",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": operation,
        },
        "seed": 0,
        "hyperparameters": {"compute_multiplier": 0.25},
        "expert": {"max_tokens": 6},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_preflight_json_and_table(tiny_model_dir, tmp_path, monkeypatch, capsys) -> None:
    config = _config(tmp_path, tiny_model_dir, "eq")
    code, out, err = openrft(monkeypatch, capsys, "preflight", config, "--rows", 2, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["verdict"] == "too_hard"
    assert (report["n_rows"], report["group_size"]) == (2, 2)
    assert report["advice"]
    code, out, err = openrft(
        monkeypatch, capsys, "preflight", config, "--rows", 2, "--chart", tmp_path / "h.png"
    )
    assert code == 0, err
    assert "too_hard" in out and "reward histogram" in out and "advice:" in out
    assert (tmp_path / "h.png").is_file()


def test_preflight_bad_config_exits_2(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model: m\ntraining_file: t.jsonl\n")
    code, _, err = openrft(monkeypatch, capsys, "preflight", path)
    assert code == 2 and "grader" in err and len(err.strip().splitlines()) == 1


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {"type": "object", "properties": {"answer": {"type": "string"}},
                   "required": ["answer"]},
    },
}


def test_eval_with_response_format_counts_parse_errors(
    files, tiny_model_dir, tmp_path, monkeypatch, capsys
) -> None:
    _, rows = files
    fmt = tmp_path / "format.json"
    fmt.write_text(json.dumps(SCHEMA))
    grader = tmp_path / "json_grader.json"
    grader.write_text(json.dumps(dict(GRADER, input="{{ sample.output_json.answer }}")))
    code, out, err = openrft(
        monkeypatch, capsys, "eval", "--model", tiny_model_dir, "--data", rows, "--grader",
        grader, "--response-format", fmt, "--max-tokens", 4, "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    # an untrained model writes no JSON object in 4 tokens: every sample fails to parse,
    # so the grader cannot read output_json.answer and scores 0 with an error
    assert summary["parse_errors"] == 3 and summary["grader_errors"] == 3
    assert summary["mean_reward"] == 0.0


def test_generate_rejects_a_bad_response_format(tiny_model_dir, tmp_path, monkeypatch, capsys):
    fmt = tmp_path / "format.json"
    fmt.write_text(json.dumps({"type": "json_schema", "json_schema": {"schema": 3}}))
    code, _, err = openrft(
        monkeypatch, capsys, "generate", "--model", tiny_model_dir, "--prompt", "hi",
        "--response-format", fmt,
    )  # fmt: skip
    assert code == 2 and "response_format" in err and len(err.strip().splitlines()) == 1


def test_eval_tools_reach_evaluate_validated(files, tiny_model_dir, tmp_path, monkeypatch,
                                             capsys) -> None:
    import openrft.eval.evaluate as evaluate_module

    seen: dict = {}
    real = evaluate_module.evaluate

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate", spy)
    grader, rows = files
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"name": "lookup", "server_url": "http://127.0.0.1:9/x",
                                  "headers": {"x-key": "k"}}]))
    code, out, err = openrft(
        monkeypatch, capsys, "eval", "--model", tiny_model_dir, "--data", rows, "--grader",
        grader, "--max-tokens", 4, "--tools", tools, "--max-episode-steps", 3, "--json",
    )  # fmt: skip
    assert code == 0, err
    assert seen["tools"] == [{"name": "lookup", "server_url": "http://127.0.0.1:9/x",
                              "headers": {"x-key": "k"}}]
    assert seen["max_episode_steps"] == 3
    assert json.loads(out)["n_rows"] == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{nope", "tools.json:1: invalid JSON"),
        ('{"name": "lookup"}', "tools.json: expected a non-empty JSON list of tool servers"),
        ("[]", "tools.json: expected a non-empty JSON list of tool servers"),
        ('[{"name": "lookup"}]', "tools.json: [0].server_url: Field required"),
        ('[{"name": "a", "server_url": "http://h/"}, {"name": "b c", "server_url": "http://h/"}]',
         "tools.json: [1].name: String should match pattern"),
        ('[{"name": "a", "server_url": "ftp://h/"}]', "tools.json: [0].server_url"),
        ('[{"name": "a", "server_url": "http://h/", "header": {}}]',
         "tools.json: [0].header: Extra inputs are not permitted"),
        ('["lookup"]', "tools.json: [0]: Input should be"),
    ],
)
def test_eval_bad_tools_file_is_one_line_and_exit_2(files, tiny_model_dir, tmp_path,
                                                    monkeypatch, capsys, content,
                                                    message) -> None:
    grader, rows = files
    tools = tmp_path / "tools.json"
    tools.write_text(content)
    code, _, err = openrft(monkeypatch, capsys, "eval", "--model", tiny_model_dir, "--data",
                           rows, "--grader", grader, "--tools", tools)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
