"""The demo end to end at miniature scale, and the CLI's handling of bad options."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from openrft.cli import main
from openrft.examples.rare_disease.base_model import BaseModelSettings
from openrft.examples.rare_disease.demo import run_demo
from openrft.examples.rare_disease.pipeline import (
    DataSettings,
    ExperimentSettings,
    RFTArmSettings,
    SFTArmSettings,
)

MINIATURE = ExperimentSettings(
    data=DataSettings(n_diseases=12, train_cases=12, valid_cases=4, heldout_cases=6,
                      valid_fraction=0.2, heldout_fraction=0.3, case_reports_per_disease=1),
    base=BaseModelSettings(hidden=32, layers=1, heads=2, intermediate=64, bpe_vocab=300,
                           epochs=1, batch_size=16),
    sft=SFTArmSettings(epochs=1, batch_size=8),
    rft=RFTArmSettings(steps=2, batch_size=2, group_size=2, max_tokens=24, select_every=1),
)


def openrft(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["openrft", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_miniature_demo_writes_results_chart_and_a_reusable_checkpoint(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "demo"
    console = Console(file=io.StringIO(), width=120)
    payload = run_demo(out, scale="mini", seeds=1, threads=1, console=console,
                       settings=MINIATURE)
    written = json.loads((out / "results.json").read_text())
    assert written == payload
    for arm in ("base", "sft", "rft", "sft_rft", "classical"):
        assert set(written[arm]) == {"top@1", "top@5", "top@max"}
        assert all(0.0 <= v <= 1.0 for v in written[arm].values())
        assert written[arm]["top@1"] <= written[arm]["top@5"] <= written[arm]["top@max"]
    heldout = Path(written["heldout_cases"])
    rows = [json.loads(line) for line in heldout.read_text().splitlines()]
    assert len(rows) == 6 and all("messages" in r and "gene" in r for r in rows)
    assert (heldout.parent / "grader.json").exists()
    assert (out / "rare_disease_chart.png").stat().st_size > 10_000
    seed0 = json.loads((out / "details.json").read_text())["seeds"][0]
    assert set(seed0["valid_metrics"]) == {"base", "sft", "rft", "sft_rft"}  # for choices
    assert "Held-out cases" in console.file.getvalue()
    code, stdout, _ = openrft(
        monkeypatch, capsys, "eval", "--model", written["rft_checkpoint"], "--data", heldout,
        "--grader", heldout.parent / "grader.json", "--json",
    )
    assert code == 0
    assert json.loads(stdout)["n_rows"] == 6


def test_demo_rejects_an_unknown_scale(monkeypatch, capsys) -> None:
    code, _, err = openrft(monkeypatch, capsys, "demo", "--scale", "huge")
    assert code == 2
    assert "--scale" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
