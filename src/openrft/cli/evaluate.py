"""`openrft eval`, `openrft generate` and `openrft preflight` (registered on the shared app).

Thin shells over `openrft.eval.evaluate`, the rollout engine and `openrft.rl.preflight`:
parse options, call the library, print with rich (or JSON with `--json`). Bad input is an
InvalidInput that `openrft.cli.main` prints as one line with exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from openrft.cli import app
from openrft.errors import InvalidInput
from openrft.rollout.engine import GenerationParams

ModelOption = Annotated[
    str, typer.Option("--model", help="Catalog name (e.g. smollm2-135m-instruct), model directory "
                                      "or hub id.")
]
MaxTokens = Annotated[int, typer.Option("--max-tokens", min=1, help="Completion token cap.")]
Temperature = Annotated[
    float | None,
    typer.Option("--temperature", min=0.0, help="Sampling temperature (0: greedy)."),
]
Seed = Annotated[int | None, typer.Option("--seed", help="Sampling seed (reproducible runs).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Effort = Annotated[
    str,
    typer.Option("--reasoning-effort", help="default, low, medium or high: reasoning budget."),
]
ResponseFormat = Annotated[
    Path | None,
    typer.Option(
        "--response-format",
        help="JSON file with an OpenAI response_format ({type: json_schema, ...}); "
        "completions are parsed into sample.output_json.",
    ),
]


def _params(
    max_tokens: int,
    temperature: float,
    seed: int | None,
    effort: str,
    response_format: Path | None,
) -> GenerationParams:
    from openrft.rollout.reasoning import reasoning_budget
    from openrft.rollout.structured import check_response_format

    fmt = _read_json_object(response_format) if response_format else None
    if fmt is not None:
        check_response_format(fmt)  # fail before the model loads
    return GenerationParams(
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        reasoning_budget=reasoning_budget(effort, max_tokens),
        response_format=fmt,
    )


def _read_json_object(path: Path) -> dict[str, Any]:
    from openrft.data.jsonl import read_text_file

    try:
        value = json.loads(read_text_file(path))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}:{exc.lineno}", f"invalid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise InvalidInput(str(path), "expected a JSON object")
    return value


def _read_tools(path: Path) -> list[dict[str, Any]]:
    """The tool servers of a `--tools` file, validated before any model loads."""
    from pydantic import ValidationError

    from openrft.data.jsonl import read_text_file
    from openrft.rollout.tools import ToolServer

    try:
        value = json.loads(read_text_file(path))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}:{exc.lineno}", f"invalid JSON: {exc.msg}") from None
    if not isinstance(value, list) or not value:
        raise InvalidInput(str(path), "expected a non-empty JSON list of tool servers")
    servers = []
    for i, entry in enumerate(value):
        try:
            servers.append(ToolServer.model_validate(entry).model_dump(exclude_none=True))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            where = f"{path}: [{i}]" + (f".{field}" if field else "")
            raise InvalidInput(where, error["msg"]) from None
    return servers


@app.command("eval")
def eval_command(
    model: ModelOption,
    data: Annotated[Path, typer.Option("--data", help="Rows JSONL (messages + fields).")],
    grader: Annotated[Path, typer.Option("--grader", help="Grader JSON file.")],
    samples: Annotated[int, typer.Option("--samples", min=1, help="Samples per row (K).")] = 1,
    max_tokens: MaxTokens = 256,
    temperature: Temperature = None,
    seed: Seed = None,
    reasoning_effort: Effort = "default",
    response_format: ResponseFormat = None,
    pass_threshold: Annotated[
        float | None,
        typer.Option(
            "--pass-threshold",
            help="A sample passes when score >= this (default: the grader's pass_threshold, "
            "else full marks).",
        ),
    ] = None,
    tools: Annotated[
        Path | None,
        typer.Option(
            "--tools",
            help="JSON file with tool servers [{name, server_url, headers}]: the model's "
            "calls are executed and answered, as in agentic training (docs/agentic.md).",
        ),
    ] = None,
    max_episode_steps: Annotated[
        int, typer.Option("--max-episode-steps", min=1, max=50,
                          help="Model turns per episode with --tools.")
    ] = 10,
    as_json: JsonFlag = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the full JSON here.")] = None,
    chart: Annotated[Path | None, typer.Option("--chart", help="Write a PNG chart.")] = None,
) -> None:
    """Evaluate a model on rows with a grader: mean reward, pass@k, top@k."""
    from openrft.cli.grade import load_grader_file
    from openrft.eval.evaluate import evaluate
    from openrft.eval.report import print_report, write_report_chart, write_report_json

    grader_spec = load_grader_file(grader)
    tool_servers = _read_tools(tools) if tools is not None else None
    default_temperature = 0.0 if samples == 1 else 1.0
    params = _params(
        max_tokens, default_temperature if temperature is None else temperature, seed,
        reasoning_effort, response_format,
    )
    report = evaluate(
        model, data, grader_spec, samples_per_row=samples, params=params,
        pass_threshold=pass_threshold, tools=tool_servers, max_episode_steps=max_episode_steps,
    )
    if out is not None:
        write_report_json(report, out)
    if chart is not None:
        write_report_chart(report, chart, title=f"{Path(model).name} on {data.name}")
    if as_json:
        typer.echo(json.dumps(report.to_dict(include_rows=False), indent=2))
    else:
        print_report(report, title=f"Evaluation of {model} on {data}")


@app.command("generate")
def generate_command(
    model: ModelOption,
    prompt: Annotated[str | None, typer.Option("--prompt", help="One user message.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Rows JSONL to answer.")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Completions per prompt.")] = 1,
    max_tokens: MaxTokens = 256,
    temperature: Temperature = None,
    seed: Seed = None,
    reasoning_effort: Effort = "default",
    response_format: ResponseFormat = None,
    as_json: JsonFlag = False,
) -> None:
    """Sample completions for a prompt or for every row of a JSONL file."""
    from openrft.eval.evaluate import engine_for

    if (prompt is None) == (data is None):
        raise InvalidInput("--prompt/--data", "give exactly one of --prompt or --data")
    prompts = _prompts(prompt, data)
    default_temperature = 0.0 if n == 1 else 1.0
    params = _params(
        max_tokens, default_temperature if temperature is None else temperature, seed,
        reasoning_effort, response_format,
    )
    samples = engine_for(model).generate(prompts, n, params)
    records = [
        {
            "prompt_index": s.prompt_index,
            "output_text": s.output_text,
            "reasoning": s.reasoning,
            "output_json": s.output_json,
            "parse_error": s.parse_error,
            "finish_reason": s.finish_reason,
            "completion_tokens": len(s.completion_ids),
        }
        for s in samples
    ]
    if as_json:
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    _print_samples(prompts, records)


def _prompts(prompt: str | None, data: Path | None) -> list[list[dict[str, Any]]]:
    if prompt is not None:
        if not prompt.strip():
            raise InvalidInput("--prompt", "must not be empty")
        return [[{"role": "user", "content": prompt}]]
    from openrft.data.dataset import load_dataset

    dataset = load_dataset(data)  # type: ignore[arg-type]
    return [dataset.prompt(i) for i in range(len(dataset))]


def _print_samples(prompts: list[list[dict[str, Any]]], records: list[dict[str, Any]]) -> None:
    console = Console()
    for record in records:
        question = prompts[record["prompt_index"]][-1]["content"]
        console.rule(f"prompt {record['prompt_index']}: {escape(str(question)[:60])}")
        if record["reasoning"]:
            console.print(f"[dim]{escape(record['reasoning'])}[/]")
        console.print(escape(record["output_text"]))
        console.print(
            f"[dim]({record['completion_tokens']} tokens, {record['finish_reason']})[/]"
        )


@app.command("preflight")
def preflight_command(
    config: Annotated[Path, typer.Argument(help="Training config YAML (as for train).")],
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows to sample.")] = 32,
    as_json: JsonFlag = False,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="Write a PNG reward histogram.")
    ] = None,
) -> None:
    """Sample the base model with the config's settings: will RFT have signal to learn?"""
    from openrft.eval.report import preflight_panel, write_histogram_chart
    from openrft.rl.preflight import preflight_config

    report = preflight_config(config, max_rows=rows)
    if chart is not None:
        write_histogram_chart(report.histogram_counts, report.histogram_edges, chart)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        Console().print(preflight_panel(report))
