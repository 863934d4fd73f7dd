"""Seconds per weight sync to the Ray rollout actors: `expert.ray.weight_sync` object_store
against collective (gloo), for full fine-tuning (every weight travels) or LoRA (`--lora`).

One `RayRolloutEngine.load_weights(weights)` call is timed: the object store's put, each
actor's fetch and load against the ping and the gloo broadcast into each actor's
parameters. The weights are CPU copies made once beforehand (what `sync_weights` makes
from the policy every step on the object-store path, timed separately as `copy s`; the
collective path broadcasts the parameters themselves). The two modes run interleaved
`--repeats` times, each on a fresh engine (its actors start, the first sync is a warm-up),
in a Ray instance this process starts on 127.0.0.1 and stops at its end.

    python benchmarks/make_model.py /tmp/bench-models/m5
    python benchmarks/weight_sync.py --model /tmp/bench-models/m5 --workers 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

# One machine: loopback addresses only, as in the tests.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # else Ray 2.60 writes ~/.ray/auth_token


def time_syncs(args: argparse.Namespace, mode: str, loaded, weights) -> list[float]:
    """Seconds of each of `--syncs` syncs on a fresh engine (after one warm-up sync)."""
    from openrft.distributed.rollout import RayRolloutEngine
    from openrft.distributed.settings import RaySettings

    settings = RaySettings(rollout_workers=args.workers, cpus_per_rollout_worker=0.5,
                           weight_sync=mode)
    engine = RayRolloutEngine(loaded.model, loaded.tokenizer, settings)
    try:
        engine.load_weights(weights)
        seconds = []
        for _ in range(args.syncs):
            started = time.perf_counter()
            engine.load_weights(weights)
            seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--syncs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lora", type=int, default=0,
                        help="LoRA rank (0: full fine-tuning, every weight travels)")
    args = parser.parse_args()

    import ray
    import torch

    from openrft.models.load import LoraSettings, load_model
    from openrft.rl.weights import trainable_weights

    torch.set_num_threads(1)
    lora = LoraSettings(rank=args.lora, alpha=2 * args.lora, dropout=0.0) if args.lora else None
    loaded = load_model(args.model, dtype="float32", trainable=True, lora=lora)
    copies = []
    for _ in range(5):
        started = time.perf_counter()
        weights = trainable_weights(loaded.model)
        copies.append(time.perf_counter() - started)
    n_params = sum(w.numel() for w in weights.values())
    mb = sum(w.numel() * w.element_size() for w in weights.values()) / 2**20
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=300 * 2**20)
    try:
        runs: dict[str, list[float]] = {"object_store": [], "collective": []}
        for _ in range(args.repeats):
            for mode in runs:
                runs[mode].append(statistics.median(time_syncs(args, mode, loaded, weights)))
    finally:
        ray.shutdown()
    print(f"{n_params} trainable parameters, {mb:.1f} MB fp32, {args.workers} actors; "
          f"copy s (trainable_weights) {statistics.median(copies):.4f}")
    print("| weight_sync | s/sync (median of repeats) | each repeat |")
    print("|---|---|---|")
    for mode, medians in runs.items():
        print(f"| {mode} | {statistics.median(medians):.4f} | "
              f"{', '.join(f'{m:.4f}' for m in medians)} |")


if __name__ == "__main__":
    main()
