"""Run the real `openrft` entry point in-process and capture (exit code, stdout, stderr)."""

from __future__ import annotations

import sys

from openrft.cli import main


def openrft(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["openrft", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err
