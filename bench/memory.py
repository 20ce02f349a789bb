"""Resident memory over a long search: does it keep growing from trial to trial?

100 small trials (the default, in-process mode) on digits; the search process's resident memory is
read after every trial and printed after every 10th. Goal: growth <= 50 MB from trial 10 to trial 100
(KerasTuner users' top complaint is memory that grows until the machine swaps).

    .venv/bin/python bench/memory.py                 # 100 trials, ~3 min
    .venv/bin/python bench/memory.py --trials 40 --isolate
    .venv/bin/python bench/memory.py --compare-gc    # frozen-heap collection vs Keras' full one, ~5 min

Between trials automl collects garbage with a frozen heap (automl.trial.reclaim_memory); `--full-gc`
uses Keras' `clear_session(free_memory=True)` instead (a full collection per trial, what a bare Keras
loop does and what automl did before), and `--compare-gc` runs both, one child process each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil

import automl  # noqa: F401
from automl import Search
from automl.data import load_data
from automl.space import SearchSpace


def space() -> SearchSpace:
    return SearchSpace.from_dict(
        {
            "name": "memory",
            "architecture": {
                "blocks": {
                    "repeat": {"type": "int", "low": 1, "high": 2},
                    "each": {
                        "block": "conv",
                        "filters": {"type": "int", "low": 8, "high": 32},
                        "kernel_size": 3,
                        "pooling": ["max", "avg"],
                    },
                },
                "pool": {"block": "global_pool", "mode": "avg"},
                "head": {"block": "dense", "units": {"type": "int", "low": 16, "high": 64}},
            },
            "training": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}, "batch_size": 128},
        }
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--isolate", action="store_true", help="train each trial in a child process")
    ap.add_argument(
        "--full-gc",
        action="store_true",
        help="clean up between trials with keras.backend.clear_session(free_memory=True)",
    )
    ap.add_argument("--compare-gc", action="store_true", help="run with and without --full-gc and compare")
    args = ap.parse_args()
    if args.compare_gc:
        return compare_gc(args)
    if args.full_gc:
        import keras

        import automl.trial

        automl.trial.reclaim_memory = lambda: keras.backend.clear_session(free_memory=True)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    proc = psutil.Process()
    rss: list[float] = []
    start = time.perf_counter()

    def record(study, trial):
        rss.append(proc.memory_info().rss / 2**20)
        if len(rss) % 10 == 0:
            print(
                f"after trial {len(rss):>4}: {rss[-1]:8.1f} MB resident  ({time.perf_counter() - start:6.1f} s)",
                flush=True,
            )

    data = load_data("digits", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        Search(
            space(),
            study_name="memory",
            storage=str(Path(tmp) / "optuna.journal"),
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            sampler="random",
            pruner="none",
            seed=0,
            max_trials=args.trials,
            patience=None,
            verbose=False,
            on_trial=record,
            isolate=args.isolate,
        ).fit(data=data, epochs=args.epochs)
    print(
        f"RESULT seconds={time.perf_counter() - start:.1f} growth={rss[-1] - rss[min(9, len(rss) - 1)]:.1f} "
        f"trials={len(rss)}"
    )
    if len(rss) >= 100:
        growth = rss[99] - rss[9]
        print(f"growth from trial 10 to 100: {growth:+.1f} MB (goal <= 50 MB): {'met' if growth <= 50 else 'NOT met'}")
    elif len(rss) >= 20:
        print(f"growth from trial 10 to {len(rss)}: {rss[-1] - rss[9]:+.1f} MB")


def compare_gc(args):
    """Both clean-ups on the same trials, one fresh process each, side by side."""
    rows = {}
    for name, extra in (("frozen heap (automl)", []), ("full gc (clear_session)", ["--full-gc"])):
        cmd = [
            sys.executable,
            __file__,
            "--trials",
            str(args.trials),
            "--epochs",
            str(args.epochs),
            *(["--isolate"] if args.isolate else []),
            *extra,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        line = next(text for text in out.splitlines() if text.startswith("RESULT "))
        rows[name] = dict(kv.split("=") for kv in line.split()[1:])
        print(
            f"{name:26s} {float(rows[name]['seconds']):7.1f} s for {rows[name]['trials']} trials, "
            f"memory growth from trial 10 {float(rows[name]['growth']):+7.1f} MB",
            flush=True,
        )
    frozen, full = (float(r["seconds"]) for r in rows.values())
    print(
        f"time ratio frozen/full: {frozen / full:.2f} "
        f"({(full - frozen) / int(args.trials) * 1000:.0f} ms saved per trial)"
    )


if __name__ == "__main__":
    main()
