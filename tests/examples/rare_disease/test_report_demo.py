"""The real-model act end to end on a tiny random model (the pipeline, not the results),
and the CLI's handling of a bad --act."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from openrft.cli import main
from openrft.examples.rare_disease.report_act import ARMS, MODEL_ARMS
from openrft.examples.rare_disease.report_demo import SHORT, run_report_demo


@pytest.mark.slow
def test_tiny_act_writes_every_arm_with_intervals(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = replace(SHORT, model=str(tiny_model_dir), train_cases=8, valid_cases=4,
                       heldout_cases=10, rft_steps=2, rft_batch=2, rft_group=2, select_every=1,
                       max_tokens=8)
    console = Console(file=io.StringIO(), width=120)
    details = run_report_demo(tmp_path, settings, seeds=1, threads=1, console=console)
    seed = details["seeds"][0]
    assert set(seed["metrics"]) == set(ARMS) and set(seed["valid_top@1"]) == set(MODEL_ARMS)
    for values in seed["metrics"].values():
        assert 0 <= values["top@1"] <= values["top@5"] <= values["top@max"] <= 1
    rows = {name: [json.loads(x) for x in (tmp_path / "seed0" / f"{name}.jsonl").open()]
            for name in ("train", "valid", "heldout")}
    assert len(rows["heldout"]) == 10 and all(len(r["candidates"]) == 5 for r in rows["heldout"])
    diseases = {name: {r["disease_id"] for r in rs} for name, rs in rows.items()}
    assert not diseases["train"] & diseases["heldout"]
    assert not diseases["valid"] & (diseases["train"] | diseases["heldout"])
    assert set(seed["per_disease_top@1"]["rft"]) == diseases["heldout"]
    for ci in details["pooled_compare"].values():
        assert ci["low"] <= ci["mean"] <= ci["high"] and ci["n"] == 10
    assert {"rft-base top@1", "rft-sft top@1", "rft-pipeline top@1"} <= set(seed["compare"])
    assert (tmp_path / "flagship_chart.png").stat().st_size > 10_000
    assert "openrft demo --model" in console.file.getvalue()  # the full command is printed
    # a second call resumes: every arm's ranks are read back, nothing is retrained
    again = run_report_demo(tmp_path, settings, seeds=1, threads=1,
                            console=Console(file=io.StringIO()))
    assert again["seeds"][0]["ranks"] == seed["ranks"] and again["seeds"][0]["timings"].keys() == {
        "cases"}


def test_demo_rejects_an_unknown_act(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["openrft", "demo", "--model", "x", "--act", "huge"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "--act" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
