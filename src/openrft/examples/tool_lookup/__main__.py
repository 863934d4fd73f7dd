"""`python -m openrft.examples.tool_lookup --out runs/tool_lookup --seed 0`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from openrft.examples.tool_lookup.run import RunSettings, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="Run directory.")
    for f in fields(RunSettings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                            default=f.default)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    results = run(out, RunSettings(**args))
    summary = {k: {"accuracy": results[k]["accuracy"], "tool_use": results[k]["tool_use"]}
               for k in ("untuned", "sft", "sft_rft")}
    report = {"summary": summary, "ci_answer": results["ci_answer"],
              "ci_tool": results["ci_tool"], "timings_s": results["timings_s"]}
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
