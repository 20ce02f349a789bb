"""Orchestration overhead: the same K configurations as a bare Keras loop and as automl.Search, in
automl's default mode (trials in a recycled worker process) and in-process, in one run.

Every side builds the same model from the same sampled configuration with the same seed, compiles
and fits it the same way (no early stopping, no pruning, so every side trains every epoch) and
cleans up between trials the same way: `automl.trial.reclaim_memory` (Keras' `clear_session` and a
garbage collection on a frozen heap) inside `automl.trial.frozen_heap()`. automl adds what the
product adds: Optuna study + journal storage, MLflow parent/child runs with params and per-epoch
metrics, best-model saving, progress, and (default mode) sending each trial to the worker process.
The bare loop runs first and last and is averaged, so drift of the machine does not favour a side.

Per trial = steady state, from the end of trial 1 to the end of trial K, over K-1 trials (the bare
loop: the mean of its trials 2..K). Trial 1 is reported apart: in the default mode it includes
starting the worker (and, once per Python process, the forkserver that imports TensorFlow).
Goal (issue 16): default mode <= 5 % and <= 150 ms per trial over the bare loop on ~3 s trials.
Goal (issue 20): the per-trial diagnostics (diagnostics.py) cost <= 3 % per trial: `default` against
`default-no-diagnostics` in the same run.

    .venv/bin/python bench/overhead.py                          # 10 configurations x 12 epochs, ~3 min idle
    .venv/bin/python bench/overhead.py --epochs 1 --trials 3    # smoke run
    .venv/bin/python bench/overhead.py --rounds 3               # modes repeated in alternating order, averaged
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

import automl  # noqa: F401  (sets quiet TF logging)
from automl import records
from automl.builder import build_model
from automl.data import load_data
from automl.isolation import RECYCLE_MB
from automl.objectives import default_objective
from automl.records import TrialSettings
from automl.search import Search
from automl.space import load_space
from automl.training import fit_model, training_settings
from automl.trial import frozen_heap, reclaim_memory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from header import print_header

MODES = {  # name -> Search(isolate=..., diagnostics=...)
    "default": (None, True),
    "in-process": (False, True),
    "isolate": (True, True),
    "default-no-diagnostics": (None, False),
    "in-process-no-diagnostics": (False, False),
}
LABELS = {
    "default": "automl default (recycled worker)",
    "in-process": "automl --in-process",
    "isolate": "automl --isolate (process/trial)",
    "default-no-diagnostics": "default, --no-diagnostics",
    "in-process-no-diagnostics": "--in-process --no-diagnostics",
}


def sample_configs(space, k: int, seed: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(k):
        trial = study.ask()
        space.sample(trial)
        configs.append(dict(trial.params))
        study.tell(trial, 0.0)
    return configs


def bare_loop(space, data, configs, settings: TrialSettings) -> list[float]:
    """What a user would write by hand, with automl's clean-up between trials; seconds per trial."""
    import keras

    times = []
    with frozen_heap():
        for i, params in enumerate(configs):
            start = time.perf_counter()
            reclaim_memory()
            keras.utils.set_random_seed(settings.seed + i)
            config = space.sample(optuna.trial.FixedTrial(params))
            model = build_model(config.architecture, data)
            fit_model(model, data, training_settings(config.training), settings, [])
            del model
            times.append(time.perf_counter() - start)
    return times


def run_search(mode: str, space, data, configs, args) -> dict:
    """The configurations through automl.Search in `mode`; timings read from the study."""
    with tempfile.TemporaryDirectory() as tmp:
        search = Search(
            space,
            study_name="overhead",
            start=False,
            storage=str(Path(tmp) / "optuna.journal"),
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            sampler="random",
            pruner="none",
            seed=args.seed,
            max_trials=len(configs),
            patience=None,
            enqueue=configs,
            verbose=False,
            isolate=MODES[mode][0],
            diagnostics=MODES[mode][1],
            recycle_mb=args.recycle_mb,
        )
        start_wall, start = time.time(), time.perf_counter()
        result = search.fit(data=data, epochs=args.epochs)
        total = time.perf_counter() - start
        trials = sorted(result.study.trials, key=lambda t: t.number)
        own = _own_seconds(result.tracking_uri, trials)
    assert [t.params for t in trials] == configs, "the search ran other configurations"
    assert result.objective == args.objective, f"the search optimised {result.objective}"
    starts = [t.datetime_start.timestamp() for t in trials]
    ends = [t.datetime_complete.timestamp() for t in trials]
    return {
        "first": ends[0] - starts[0],  # trial 1: includes starting the worker in the default mode
        "per_trial": (ends[-1] - ends[0]) / (len(trials) - 1),  # sampling and callbacks between trials included
        "setup": starts[0] - start_wall,  # study, MLflow store and parent run
        "teardown": start_wall + total - ends[-1],  # leaderboard, best model onto the parent run
        "total": total,
        "states": sorted({t.state.name for t in trials}),
        "workers": len({t.user_attrs.get(records.WORKER) for t in trials}),
        **own,
    }


def _own_seconds(tracking_uri: str, trials) -> dict:
    """What the trials measured inside themselves: training seconds and the diagnostics' own seconds
    (diagnostics.py times its probe, measurements and logging); the same trials, so no drift between."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    metrics = [client.get_run(t.user_attrs[records.MLFLOW_RUN_ID]).data.metrics for t in trials]
    return {
        "train_seconds": sum(m.get("train_seconds", 0.0) for m in metrics),
        "diagnostics_seconds": sum(m.get("diagnostics_seconds", 0.0) for m in metrics),
    }


def _mean_run(runs: list[dict]) -> dict:
    """One mode's rounds: numbers averaged, the rest from the first round."""
    return {k: statistics.mean(r[k] for r in runs) if isinstance(v, float) else v for k, v in runs[0].items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10, help="configurations (at least 2)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--space", default="image_cnn")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--modes", nargs="+", default=["default", "default-no-diagnostics", "in-process"], choices=list(MODES)
    )
    ap.add_argument("--rounds", type=int, default=1, help="repeat the modes, order alternating, and average")
    ap.add_argument("--recycle-mb", type=float, default=RECYCLE_MB, help="the default mode's worker recycling")
    args = ap.parse_args()
    if args.trials < 2:
        ap.error("--trials: at least 2 (the steady state is measured from the end of trial 1)")
    print_header()

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(args.space)
    data = load_data(args.data, seed=args.seed)
    args.objective, direction = default_objective(data.task)
    settings = TrialSettings(
        objective=args.objective, direction=direction, epochs=args.epochs, patience=None, seed=args.seed
    )
    configs = sample_configs(space, args.trials, args.seed)
    print(
        f"{args.trials} configurations of {args.space} on {data.summary()}, {args.epochs} epochs each; "
        f"objective {args.objective} ({direction}); modes: {', '.join(args.modes)}",
        flush=True,
    )

    bare_loop(space, data, configs[:1], settings)  # warm up TF kernels once, off the clock
    bare_before = bare_loop(space, data, configs, settings)
    rounds: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for r in range(args.rounds):  # alternate the order, so drift of the machine favours no mode
        for mode in args.modes if r % 2 == 0 else list(reversed(args.modes)):
            rounds[mode].append(run_search(mode, space, data, configs, args))
    runs = {mode: _mean_run(rs) for mode, rs in rounds.items()}
    if args.rounds > 1:
        print(
            "per round, s/trial: "
            + "; ".join(f"{m} {[round(r['per_trial'], 3) for r in rs]}" for m, rs in rounds.items())
        )
    bare_after = bare_loop(space, data, configs, settings)

    k = args.trials
    bare = [(a + b) / 2 for a, b in zip(bare_before, bare_after)]
    bare_mean = statistics.mean(bare[1:])
    print(f"\n{'steady state, trials 2..K':36}{'s/trial':>9}{'overhead':>20}")
    print(
        f"{'bare Keras loop (mean of 2 runs)':36}{bare_mean:>9.3f}{'':20}   "
        f"(runs: {statistics.mean(bare_before[1:]):.3f}, {statistics.mean(bare_after[1:]):.3f})"
    )
    for mode, r in runs.items():
        extra = r["per_trial"] - bare_mean
        cell = f"{1000 * extra:+.0f} ms = {100 * extra / bare_mean:+.1f}%"
        states = f"({', '.join(r['states'])}; {r['workers']} worker(s))"
        print(f"{LABELS[mode]:36}{r['per_trial']:>9.3f}{cell:>20}   {states}")
    if "default" in runs:
        extra = runs["default"]["per_trial"] - bare_mean
        met = extra <= 0.150 and extra <= 0.05 * bare_mean
        print(
            f"goal, default mode <= 150 ms and <= 5% per trial over the bare loop on ~3 s trials: "
            f"{'met' if met else 'NOT met'} ({1000 * extra:+.0f} ms, {100 * extra / bare_mean:+.1f}% "
            f"on {bare_mean:.1f} s trials)"
        )
    for with_diag in ("default", "in-process"):
        without = f"{with_diag}-no-diagnostics"
        if with_diag in runs and without in runs:
            diffs = [a["per_trial"] / b["per_trial"] - 1 for a, b in zip(rounds[with_diag], rounds[without])]
            cost = statistics.mean(diffs)
            se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
            print(
                f"diagnostics (issue 20, goal <= 3% per trial), {with_diag} vs {without}, paired by round: "
                f"{100 * cost:+.1f} +- {100 * se:.1f}% per trial (the machine's drift is inside this figure)"
            )
        if with_diag in runs and runs[with_diag]["train_seconds"]:
            r = runs[with_diag]
            share = r["diagnostics_seconds"] / (r["train_seconds"] - r["diagnostics_seconds"])
            print(
                f"diagnostics (issue 20, goal <= 3% per trial), {with_diag}, their own time measured inside the "
                f"trials: {r['diagnostics_seconds']:.2f} s on {r['train_seconds'] - r['diagnostics_seconds']:.1f} s "
                f"of training = {100 * share:+.1f}% ({'met' if share <= 0.03 else 'NOT met'})"
            )
    print(f"\ntrial 1: bare loop {bare[0]:.3f} s; " + "; ".join(f"{m} {r['first']:.3f} s" for m, r in runs.items()))
    print("  (default: includes starting the worker, and the forkserver with TensorFlow once per process)")
    for mode, r in runs.items():
        print(
            f"once per search, {mode}: setup {r['setup']:.2f} s (study, MLflow store and parent run), teardown "
            f"{r['teardown']:.2f} s (leaderboard, best model onto the parent run); whole fit() "
            f"{r['total'] / k:.3f} s/trial = ratio {r['total'] / k / statistics.mean(bare):.3f} for {k} trials"
        )


if __name__ == "__main__":
    main()
