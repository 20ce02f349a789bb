"""Search strategies side by side: time to a target score and best score at a fixed budget.

On `../shared/data/mnist_test` (the fixed 4000 train / 1000 val split of bench/quality.py), the
image default space is searched by each method with the same wall-clock budget, each in its own
process, for several seeds:

    random        RandomSampler, no pruning (the baseline)
    tpe+median    TPE + median pruner (our default)
    tpe+hyperband TPE + Hyperband pruner
    kt-hyperband  KerasTuner's Hyperband driving the same space (through automl's adapter)

Time to target = seconds from the first trial's start until a finished trial's best validation
accuracy first reaches the target (process start-up and TensorFlow import are not counted);
"never" when the budget ran out first. Goal: the default reaches the target in at most half the
time random search needs (median over seeds). The four strategies run without the space's `start`
configuration (a pure comparison of samplers and pruners); `default` is tpe+median with it, as
`automl` runs out of the box.

    .venv/bin/python bench/strategies.py                    # 5 methods x 2 seeds x 120 s, ~22 min
    .venv/bin/python bench/strategies.py --budget 60 --seeds 0 --methods random tpe+median
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import check_data, load_task
from results_md import machine, write_section

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

METHODS = {
    "random": ("random", "none"),
    "tpe+median": ("tpe", "median"),
    "tpe+hyperband": ("tpe", "hyperband"),
    "kt-hyperband": ("kt-hyperband", "none"),
    "default": ("tpe", "median"),
}  # tpe+median plus the space's start configuration
DEFAULT_METHODS = ["random", "tpe+median", "tpe+hyperband", "kt-hyperband", "default"]
TASK = "mnist_test"
MARK = "STRATEGY-RESULT "


def run_one(method: str, seed: int, budget: float, epochs: int) -> dict:
    """One search in this process; the figures read back from its Optuna study."""
    import optuna

    import automl

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner = METHODS[method]
    splits = load_task(TASK)
    (x, y), (x_val, y_val) = splits["train"], splits["val"]
    with tempfile.TemporaryDirectory(prefix="automl-strategies-") as tmp:
        clf = automl.ImageClassifier(
            max_trials=100_000,
            timeout=budget,
            seed=seed,
            epochs=epochs,
            verbose=False,
            sampler=sampler,
            pruner=pruner,
            start=method == "default",
            storage=str(Path(tmp) / "optuna.journal"),
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
        )
        result = clf.fit(x, y, validation_data=(x_val, y_val))
        trials = result.study.trials
    start = min(t.datetime_start for t in trials if t.datetime_start)
    done = sorted((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.datetime_complete)
    curve = []  # (seconds, best so far) at each completed trial
    best = None
    for t in done:
        best = t.value if best is None else max(best, t.value)
        curve.append(((t.datetime_complete - start).total_seconds(), best))
    states = [t.state.name for t in trials]
    return {
        "method": method,
        "seed": seed,
        "best": best,
        "trials": len(trials),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "curve": curve,
    }


def run_child(method: str, seed: int, budget: float, epochs: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--one",
        method,
        "--seed",
        str(seed),
        "--budget",
        str(budget),
        "--epochs",
        str(epochs),
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget * 3 + 600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"{method} seed {seed} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(line[len(MARK) :])
    out["process_seconds"] = time.perf_counter() - started
    return out


def _median(values):
    """Median of times where a run that never reached the target counts as infinitely slow."""
    finite = [v if v is not None else float("inf") for v in values]
    m = statistics.median(finite)
    return None if m == float("inf") else m


def reached_at(run: dict, target: float):
    """Seconds until the run's best-so-far first reached `target` (None: never, within its budget)."""
    return next((t for t, best in run["curve"] if best >= target), None)


def report(results: list[dict], methods, targets: list[float]) -> str:
    """Per run, then per method (median over seeds) with the ratio to random, for each target."""
    head = " | ".join(f"to {t:g} (s)" for t in targets)
    rows = [
        f"| method | seed | best val acc | {head} | trials | pruned |",
        "|---|---|---|" + "---|" * len(targets) + "---|---|",
    ]
    fmt = lambda v: f"{v:.0f}" if v is not None else "never"  # noqa: E731
    for r in results:
        times = " | ".join(fmt(reached_at(r, t)) for t in targets)
        rows.append(f"| {r['method']} | {r['seed']} | {r['best']:.4f} | {times} | {r['trials']} | {r['pruned']} |")
    rows += [
        "",
        f"| method (median over seeds) | best val acc | {head.replace('(s)', '(s, vs random)')} |",
        "|---|---|" + "---|" * len(targets),
    ]
    for m in methods:
        mine = [r for r in results if r["method"] == m]
        cells = []
        for t in targets:
            mine_t = _median([reached_at(r, t) for r in mine])
            base = _median([reached_at(r, t) for r in results if r["method"] == "random"])
            ratio = (
                f"{mine_t / base:.2f}x"
                if mine_t is not None and base
                else ("random never" if mine_t is not None else "")
            )
            cells.append(f"{fmt(mine_t)} ({ratio})" if ratio else fmt(mine_t))
        rows.append(f"| {m} | {statistics.median(r['best'] for r in mine):.4f} | {' | '.join(cells)} |")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--budget", type=float, default=120, help="wall-clock seconds per search")
    ap.add_argument("--epochs", type=int, default=8, help="most epochs per trial")
    ap.add_argument(
        "--target",
        type=float,
        nargs="+",
        default=[0.9, 0.95, 0.97],
        help="validation accuracies to reach (time to each is reported)",
    )
    ap.add_argument("--from-json", type=Path, help="report runs saved by --json instead of running")
    ap.add_argument("--one", choices=list(METHODS), help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also write every run (with its best-so-far curve) here")
    args = ap.parse_args(argv)
    check_data([TASK])
    if args.one:
        print(MARK + json.dumps(run_one(args.one, args.seed, args.budget, args.epochs)), flush=True)
        return
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        args.methods = [m for m in args.methods if any(r["method"] == m for r in results)]
    else:
        results = []
        for seed in args.seeds:  # methods interleaved per seed, so a slow spell of the machine hits all
            for method in args.methods:
                r = run_child(method, seed, args.budget, args.epochs)
                results.append(r)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
                print(
                    f"{method:14s} seed {seed}: best {r['best']:.4f} after {r['trials']} trials "
                    f"({r['pruned']} pruned); " + ", ".join(f"{t:g} at {reached_at(r, t)} s" for t in args.target),
                    flush=True,
                )
    table = report(results, args.methods, args.target)
    print()
    print(table)
    command = "python bench/strategies.py " + " ".join(argv if argv is not None else sys.argv[1:])
    body = (
        f"`{command.strip()}` on {machine()}; task {TASK} (4000 train / 1000 val), image default space, "
        f"{args.budget:g} s per search, at most {args.epochs} epochs per trial, seeds "
        f"{' '.join(map(str, args.seeds))}. The four strategies run without the space's start "
        f"configuration; `default` is tpe+median with it (as automl runs out of the box). Time to a "
        f"target counts from the first trial's start to the end of the first trial that reached it.\n\n{table}\n"
    )
    if not args.no_write:
        write_section("Strategies", body)


if __name__ == "__main__":
    main()
