"""The real-model act end to end on a tiny random model (the pipeline, not the results),
and the CLI's handling of a bad --act."""

from __future__ import annotations

import io
import json
import shutil
import sys
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import yaml
from rich.console import Console

from openrft.cli import main
from openrft.examples.rare_disease.report_act import ARMS, MODEL_ARMS
from openrft.examples.rare_disease.report_demo import SHORT, run_report_demo
from openrft.rl.run_dir import read_jsonl_rows


@pytest.mark.slow
@pytest.mark.parametrize("task", ["findings", "candidates"])
def test_tiny_act_writes_every_arm_with_intervals(tmp_path: Path, tiny_model_dir: Path,
                                                  task: str) -> None:
    settings = replace(SHORT, model=str(tiny_model_dir), task=task, train_cases=8, valid_cases=4,
                       heldout_cases=10, rft_steps=2, sft_rft_steps=1, rft_batch=2, rft_group=2,
                       select_every=1, max_tokens=8)
    threads_before = threading.active_count()
    console = Console(file=io.StringIO(), width=120)
    details = run_report_demo(tmp_path, settings, seeds=1, threads=1, console=console)
    seed = details["seeds"][0]
    assert set(seed["metrics"]) == set(ARMS) and set(seed["valid_top@1"]) == set(MODEL_ARMS)
    for values in seed["metrics"].values():
        assert 0 <= values["top@1"] <= values["top@5"] <= values["top@max"] <= 1
    rows = {name: [json.loads(x) for x in (tmp_path / "seed0" / f"{name}.jsonl").open()]
            for name in ("train", "valid", "heldout")}
    assert len(rows["heldout"]) == 10
    if task == "candidates":
        assert all(len(r["candidates"]) == 5 for r in rows["heldout"])
        assert (tmp_path / "seed0" / "grader.json").exists()
    else:  # the model lists findings; the grader server ranks genes and is gone now
        assert all(r["target"] and "candidates" not in r for r in rows["train"])
        rft_config = yaml.safe_load((tmp_path / "seed0" / "rft" / "config.yaml").read_text())
        assert rft_config["grader"]["type"] == "endpoint"
        sft_rft_config = yaml.safe_load(
            (tmp_path / "seed0" / "sft_rft" / "config.yaml").read_text())
        assert (rft_config["total_steps"], sft_rft_config["total_steps"]) == (2, 1)
        with pytest.raises(httpx.ConnectError):
            httpx.post(rft_config["grader"]["url"], json={}, timeout=2)
        assert threading.active_count() <= threads_before
    diseases = {name: {r["disease_id"] for r in rs} for name, rs in rows.items()}
    assert not diseases["train"] & diseases["heldout"]
    assert not diseases["valid"] & (diseases["train"] | diseases["heldout"])
    assert set(seed["per_disease_top@1"]["rft"]) == diseases["heldout"]
    for ci in details["pooled_compare"].values():
        assert ci["low"] <= ci["mean"] <= ci["high"] and ci["n"] == 10
    assert {"rft-base top@1", "rft-sft top@1", "rft-pipeline top@1"} <= set(seed["compare"])
    assert (tmp_path / "flagship_chart.png").stat().st_size > 10_000
    assert "openrft demo --model" in console.file.getvalue()  # the full command is printed
    # every model arm's held-out answers are kept, and the first case's are shown
    saved = json.loads((tmp_path / "seed0" / "ranks" / "rft.json").read_text())
    assert len(saved["answers"]) == 10 and saved["ranks"] == seed["ranks"]["rft"]
    assert seed["example"]["answers"]["rft"] == saved["answers"][0]
    assert set(seed["example"]["answers"]) == set(MODEL_ARMS)
    assert "The first held-out case" in console.file.getvalue()
    # a second call resumes: every arm's ranks are read back, nothing is retrained
    again = run_report_demo(tmp_path, settings, seeds=1, threads=1,
                            console=Console(file=io.StringIO()))
    assert again["seeds"][0]["ranks"] == seed["ranks"] and again["seeds"][0]["timings"].keys() == {
        "cases"}
    # an RFT arm killed after its first step continues from that checkpoint (before, the
    # act refused the half-written run directory) and ends where the straight run ended
    rft = tmp_path / "seed0" / "rft"
    (tmp_path / "seed0" / "ranks" / "rft.json").unlink()
    for leftover in (rft / "checkpoints" / "step-2", rft / "final", rft / "selected"):
        shutil.rmtree(leftover)
    resumed = run_report_demo(tmp_path, settings, seeds=1, threads=1,
                              console=Console(file=io.StringIO()))
    assert resumed["seeds"][0]["timings"].keys() == {"cases", "rft"}
    events = read_jsonl_rows(rft / "events.jsonl")
    resumed_at = [e["data"]["resumed_step"] for e in events if "resumed_step" in (e["data"] or {})]
    assert resumed_at == [1]
    assert resumed["seeds"][0]["ranks"]["rft"] == seed["ranks"]["rft"]


@pytest.mark.parametrize(("option", "value", "named"), [("--act", "huge", "short"),
                                                      ("--task", "genes", "findings")])
def test_demo_rejects_an_unknown_act_or_task(monkeypatch, capsys, option: str, value: str,
                                             named: str) -> None:
    monkeypatch.setattr(sys, "argv", ["openrft", "demo", "--model", "x", option, value])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert option in err and named in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
