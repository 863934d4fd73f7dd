"""`openrft models list` and `openrft models pull` (without downloading: the pull path
itself is covered in tests/models/test_catalog.py and the slow SmolLM2 tests)."""

from __future__ import annotations

import shutil

from cli_runner import openrft

from openrft.models.catalog import MODELS_DIR_ENV


def test_list_shows_catalog_and_local_models(monkeypatch, capsys, tmp_path,
                                             tiny_model_dir) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "elsewhere"))  # restored after
    models = tmp_path / "models"
    code, out, _ = openrft(monkeypatch, capsys, "--models-dir", models, "models", "list")
    assert code == 0
    row = next(line for line in out.splitlines() if "smollm2-135m-instruct" in line)
    assert "no" in row and "93 MB download" in row and "Apache-2.0" in row
    shutil.copytree(tiny_model_dir, models / "my-tiny")
    code, out, _ = openrft(monkeypatch, capsys, "models", "list", "--models-dir", models)
    row = next(line for line in out.splitlines() if "my-tiny" in line)
    assert "local" in row and str(models / "my-tiny") in row


def test_pull_is_idempotent_and_unknown_names_are_one_line(monkeypatch, capsys, tmp_path,
                                                           tiny_model_dir) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "smollm2-135m-instruct")  # as if pulled before
    code, out, _ = openrft(monkeypatch, capsys, "models", "pull", "smollm2-135m-instruct",
                           "--models-dir", models)
    assert code == 0 and "already pulled" in out
    code, _, err = openrft(monkeypatch, capsys, "models", "pull", "gpt-17",
                           "--models-dir", models)
    assert code == 2
    assert err.strip().count("\n") == 0 and "gpt-17" in err and "smollm2-135m-instruct" in err
