"""Search strategies side by side: time to a target score and best score at a fixed budget.

On `../shared/data/mnist_test` (the fixed 4000 train / 1000 val split of bench/quality.py), the
image default space is searched by each method with the same wall-clock budget, each in its own
process, for several seeds:

    random        RandomSampler, no pruning (the baseline)
    tpe+median    TPE + median pruner (our default)
    tpe+hyperband TPE + Hyperband pruner
    kt-hyperband  KerasTuner's Hyperband driving the same space (through automl's adapter)

Every search ranks its trials by `--objective` (default val_loss, as the task classes do), passed
explicitly and checked against what the search reports. The pick at any moment is the finished
trial best by that objective; its validation accuracy is the one recorded at the trial's best epoch
(the epoch the objective chose, read from the trial's MLflow metrics), not the objective's value.
Time to target = seconds from the first trial's start until the pick's validation accuracy first
reaches the target; "never" when the budget ran out first. Process start-up and TensorFlow's import
are not counted, neither here nor in the forkserver that trial workers fork from (started before the
search): the methods that train in a worker (all but kt-hyperband, which trains in the search process)
pay only the worker's own start, in their first trial (bench/overhead.py measures it). Goal: the
default reaches the target in at most half the time random search needs (median over seeds). The
four strategies run without the space's `start` configuration (a pure comparison of samplers and
pruners); `default` is tpe+median with it, as `automl` runs out of the box.

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
from header import print_header
from quality import check_data, load_task
from results_md import write_section

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
DIRECTIONS = {"val_loss": "minimize", "val_accuracy": "maximize"}
TASK = "mnist_test"
MARK = "STRATEGY-RESULT "


def accuracy_at_best_epoch(tracking_uri: str, trial, objective: str, direction: str) -> float:
    """The trial's validation accuracy at the epoch its objective chose, from its MLflow metrics."""
    from automl import records, tracking
    from automl.training import TIEBREAK, best_epoch

    if objective == "val_accuracy":
        return trial.value
    by_epoch: dict[int, dict[str, float]] = {}
    for name in {objective, TIEBREAK, "val_accuracy"}:
        for step, value in tracking.metric_history(tracking_uri, trial.user_attrs[records.MLFLOW_RUN_ID], name):
            by_epoch.setdefault(step, {})[name] = value
    history = [by_epoch[step] for step in sorted(by_epoch)]
    at_best = history[best_epoch(history, objective, direction)]
    assert abs(at_best[objective] - trial.value) <= 1e-6 * max(1.0, abs(trial.value)), (
        f"trial {trial.number}: {objective} at the best epoch {at_best[objective]} is not its value {trial.value}"
    )
    return at_best["val_accuracy"]


def start_forkserver():
    """Start the forkserver that trial workers fork from (it imports TensorFlow, 5-10 s) off the clock."""
    import multiprocessing.forkserver

    from automl import isolation

    isolation._context()  # the forkserver with automl.trial preloaded, as the search would start it
    with isolation._without_main_module():
        multiprocessing.forkserver.ensure_running()


def run_one(method: str, seed: int, budget: float, epochs: int, objective: str) -> dict:
    """One search in this process; the figures read back from its Optuna study and MLflow runs."""
    import optuna

    import automl
    from automl import records
    from automl.ranking import rank_key

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner = METHODS[method]
    direction = DIRECTIONS[objective]
    splits = load_task(TASK)
    (x, y), (x_val, y_val) = splits["train"], splits["val"]
    if sampler != "kt-hyperband":  # trials train in a worker process (automl's default mode)
        start_forkserver()
    with tempfile.TemporaryDirectory(prefix="automl-strategies-") as tmp:
        tracking_uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        clf = automl.ImageClassifier(
            max_trials=100_000,
            timeout=budget,
            seed=seed,
            epochs=epochs,
            verbose=False,
            sampler=sampler,
            pruner=pruner,
            objective=objective,
            direction=direction,
            start=method == "default",
            storage=str(Path(tmp) / "optuna.journal"),
            tracking_uri=tracking_uri,
        )
        result = clf.fit(x, y, validation_data=(x_val, y_val))
        study = result.study
        assert result.objective == objective, f"the search optimised {result.objective}, not {objective}"
        assert study.direction.name.lower() == direction, f"the search's direction is {study.direction.name}"
        trials = study.trials
        done = sorted((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.datetime_complete)
        accuracy = {t.number: accuracy_at_best_epoch(tracking_uri, t, objective, direction) for t in done}
        best_number = result.best_trial.number if done else None

    def rank(t):  # automl's own order (automl.ranking): the objective, then the lower val_loss
        return (*rank_key(t.value, t.user_attrs.get(records.TIEBREAK), direction == "maximize"), t.number)

    start = min(t.datetime_start for t in trials if t.datetime_start)
    curve = []  # (seconds, best objective so far, val accuracy of that trial) at each completed trial
    pick = None
    for t in done:
        if pick is None or rank(t) < rank(pick):
            pick = t
        curve.append(((t.datetime_complete - start).total_seconds(), pick.value, accuracy[pick.number]))
    pick_number = pick.number if pick else None
    assert pick_number == best_number, f"the pick {pick_number} is not the search's best trial {best_number}"
    states = [t.state.name for t in trials]
    return {
        "method": method,
        "seed": seed,
        "objective": objective,
        "direction": direction,
        "best": pick.value if pick else None,
        "best_acc": accuracy[pick.number] if pick else None,
        "trials": len(trials),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "curve": curve,
    }


def run_child(method: str, seed: int, budget: float, epochs: int, objective: str) -> dict:
    cmd = [sys.executable, __file__, "--one", method, "--seed", str(seed), "--budget", str(budget)]
    cmd += ["--epochs", str(epochs), "--objective", objective]
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
    """Seconds until the run's pick (best trial by its objective) first had a val accuracy >= `target`
    (None: never, within its budget)."""
    return next((t for t, _, acc in run["curve"] if acc >= target), None)


def objective_of(results: list[dict]) -> tuple[str, str]:
    """The one objective and direction all runs optimised (a table mixing two would compare nothing)."""
    found = {(r.get("objective"), r.get("direction")) for r in results}
    if len(found) != 1 or None in next(iter(found)):
        raise SystemExit(
            f"error: the runs do not share one recorded objective ({sorted(map(str, found))}); runs saved "
            "before the objective was recorded reported trial.value as accuracy: run them again"
        )
    return next(iter(found))


def report(results: list[dict], methods, targets: list[float]) -> str:
    """Per run, then per method (median over seeds) with the ratio to random, for each target."""
    objective, direction = objective_of(results)
    best = f"best {objective} ({direction[:3]})"
    head = " | ".join(f"to {t:g} (s)" for t in targets)
    rows = [
        f"| method | seed | {best} | its val acc | {head} | trials | pruned |",
        "|---|---|---|---|" + "---|" * len(targets) + "---|---|",
    ]
    fmt = lambda v: f"{v:.0f}" if v is not None else "never"  # noqa: E731
    num = lambda v: f"{v:.4f}" if v is not None else "none"  # noqa: E731
    for r in results:
        times = " | ".join(fmt(reached_at(r, t)) for t in targets)
        rows.append(
            f"| {r['method']} | {r['seed']} | {num(r['best'])} | {num(r['best_acc'])} | {times} | "
            f"{r['trials']} | {r['pruned']} |"
        )
    rows += [
        "",
        f"| method (median over seeds) | {best} | its val acc | {head.replace('(s)', '(s, vs random)')} |",
        "|---|---|---|" + "---|" * len(targets),
    ]
    for m in methods:
        mine = [r for r in results if r["method"] == m]
        cells = []
        for t in targets:
            mine_t = _median([reached_at(r, t) for r in mine])
            randoms = [reached_at(r, t) for r in results if r["method"] == "random"]
            base = _median(randoms) if randoms else None
            ratio = (
                f"{mine_t / base:.2f}x"
                if mine_t is not None and base
                else ("random never" if mine_t is not None and randoms else "")
            )
            cells.append(f"{fmt(mine_t)} ({ratio})" if ratio else fmt(mine_t))
        values = [r["best"] for r in mine if r["best"] is not None]
        accs = [r["best_acc"] for r in mine if r["best_acc"] is not None]
        rows.append(
            f"| {m} | {num(statistics.median(values) if values else None)} | "
            f"{num(statistics.median(accs) if accs else None)} | {' | '.join(cells)} |"
        )
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--budget", type=float, default=120, help="wall-clock seconds per search")
    ap.add_argument("--epochs", type=int, default=8, help="most epochs per trial")
    ap.add_argument(
        "--objective",
        default="val_loss",
        choices=list(DIRECTIONS),
        help="what every search ranks its trials by (default: val_loss, as the task classes)",
    )
    ap.add_argument(
        "--target",
        type=float,
        nargs="+",
        default=[0.9, 0.95, 0.97],
        help="validation accuracies of the pick to reach (time to each is reported)",
    )
    ap.add_argument("--from-json", type=Path, help="report runs saved by --json instead of running")
    ap.add_argument("--one", choices=list(METHODS), help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also write every run (with its best-so-far curve) here")
    args = ap.parse_args(argv)
    check_data([TASK])
    if args.one:
        run = run_one(args.one, args.seed, args.budget, args.epochs, args.objective)
        print(MARK + json.dumps(run), flush=True)
        return
    header = print_header()
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        args.methods = [m for m in args.methods if any(r["method"] == m for r in results)]
    else:
        print(f"objective: {args.objective} ({DIRECTIONS[args.objective]}), passed to every search", flush=True)
        results = []
        for seed in args.seeds:  # methods interleaved per seed, so a slow spell of the machine hits all
            for method in args.methods:
                r = run_child(method, seed, args.budget, args.epochs, args.objective)
                results.append(r)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
                best = "no complete trial" if r["best"] is None else f"{r['best']:.4f} (val acc {r['best_acc']:.4f})"
                print(
                    f"{method:14s} seed {seed}: best {r['objective']} {best} after {r['trials']} trials "
                    f"({r['pruned']} pruned); " + ", ".join(f"{t:g} at {reached_at(r, t)} s" for t in args.target),
                    flush=True,
                )
    objective, direction = objective_of(results)
    table = report(results, args.methods, args.target)
    print()
    print(f"objective reported: {objective} ({direction}); val acc = the pick's, at its best epoch")
    print(table)
    command = "python bench/strategies.py " + " ".join(argv if argv is not None else sys.argv[1:])
    body = (
        f"`{command.strip()}` ({header}); task {TASK} (4000 train / 1000 val), image default "
        f"space, {args.budget:g} s per search, at most {args.epochs} epochs per trial, seeds "
        f"{' '.join(map(str, args.seeds))}; every search ranks by {objective} ({direction}), the task classes' "
        f"default. The four strategies run without the space's start "
        f"configuration; `default` is tpe+median with it (as automl runs out of the box). The pick = the "
        f"finished trial best by {objective} so far; its val acc = its validation accuracy at its best epoch. "
        f"Time to a target counts from the first trial's start to the end of the trial after which the "
        f"pick's val acc first reached it.\n\n{table}\n"
    )
    if not args.no_write:
        write_section("Strategies", body)


if __name__ == "__main__":
    main()
