"""Build a benchmark model directory: a random-init Llama + BPE tokenizer, fully offline.

The defaults are BENCHMARKS.md's `m5` (hidden 256, 4 layers, 4 heads, intermediate 512,
vocab target 4096: ~4.7M parameters); `--hidden 512 --layers 6 --heads 8 --intermediate
1024` gives `m20`. Built by `openrft.models.tiny.build_tiny_model`, so two builds with the
same arguments are byte-identical.

    python benchmarks/make_model.py runs/bench-models/m5
"""

from __future__ import annotations

import argparse

from openrft.models.tiny import build_tiny_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary target")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = build_tiny_model(args.out_dir, hidden=args.hidden, layers=args.layers,
                           heads=args.heads, intermediate=args.intermediate,
                           vocab_size=args.vocab, seed=args.seed)
    print(out)


if __name__ == "__main__":
    main()
