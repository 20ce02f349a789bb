"""Ensemble selection rules compared on the same searches: what each would have scored on the test split.

Each (task, seed) runs the default `automl` search of bench/suite.py (task class, `--budget` s, the
suite's fixed splits) once in a child process, then keeps the validation and test predictions of
the trials an ensemble is chosen from (automl.ensemble.kept_predictions: the top 20) in an .npz
under `--store` (not committed: large). The parent then applies every rule in RULES to the same
validation predictions and scores the chosen mixture on the test split, so differences between
rules are the rules' alone (paired per search; WIN / LOSS beyond 2 standard errors, else TIE).

Why: with a few hundred validation rows the greedy selection (Caruana et al. 2004) can fit the
validation split's noise (bench/RESULTS.md "Suite": sentiment_amazon).

    .venv/bin/python bench/ensemble_selection.py --tasks text --seeds 0,1,2            # run + report
    .venv/bin/python bench/ensemble_selection.py --tasks text --seeds 0,1,2 --resume   # report only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from header import print_header
from quality import regression_scores, scores
from suite import code_version, task_class
from suite_tasks import check_data, load, parse_tasks

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]


def run_search(task: str, seed: int, budget: float, path: Path) -> None:
    """The child: one default search, then the candidates' validation and test predictions."""
    import optuna

    from automl import ensemble
    from automl.data import model_inputs
    from automl.export.trials import TrialModels

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    splits = load(task)
    (x, y), (x_val, y_val), (x_test, y_test) = splits["train"], splits["val"], splits["test"]
    with tempfile.TemporaryDirectory(prefix="automl-ens-") as tmp:
        clf = task_class(task)(
            max_trials=100_000,
            timeout=budget,
            seed=seed,
            verbose=False,
            storage=str(Path(tmp) / "optuna.journal"),
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
        )
        result = clf.fit(x, y, validation_data=(x_val, y_val))
        data = clf.data
        trials, val = ensemble.kept_predictions(result)
        source = TrialModels(result, data, verbose=False)
        inputs = model_inputs(data, x_test)
        test = np.stack([source.model(t).predict(inputs, verbose=0) for t in trials])
        np.savez_compressed(
            path,
            numbers=np.asarray([t.number for t in trials]),
            best=result.best_trial.number,
            val=val,
            test=test,
            y_val=np.asarray(data.y_val),
            y_test=np.asarray(y_test),
            class_names=np.asarray(data.class_names if data.task == "classification" else []),
            task=data.task,
            target_std=float(data.target_std),
            commit=code_version(),
            trial_log=json.dumps([_trial_facts(t) for t in result.study.trials]),
        )


def _trial_facts(t) -> dict:
    """What the schedule did with a trial (its state, fidelity, what it continued or kept)."""
    from automl import records

    keys = (
        records.FIDELITY,
        records.CONTINUED_FROM,
        records.KEPT_FITTED_START,
        records.KEPT_SAVED_WEIGHTS,
        records.SETTLED_EARLY,
    )
    facts = {k: t.user_attrs[k] for k in keys if k in t.user_attrs}
    seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
    return {"number": t.number, "state": t.state.name, "value": t.value, "seconds": seconds, **facts}


# ---------------------------------------------------------------- the rules


def rule_current(numbers, val, y, task, best, target_std, rng):
    """automl.ensemble.select as shipped."""
    from automl.ensemble import select

    choice = select(list(numbers), val, y, task, best, 20, target_std)
    return dict(zip(choice.members, choice.weights))


def rule_single(numbers, val, y, task, best, target_std, rng):
    return {best: 1.0}


def _gate(weights: dict, numbers, val, y, task, best, target_std):
    """The mixture when its validation loss is below the best trial's alone, else the best trial."""
    from automl.ensemble import validation_loss

    index = {n: i for i, n in enumerate(numbers)}
    mixed = sum(w * val[index[n]] for n, w in weights.items())
    alone = validation_loss(val[index[best]], y, task, target_std) if best in index else np.inf
    return weights if validation_loss(mixed, y, task, target_std) < alone else {best: 1.0}


def rule_bootstrap(numbers, val, y, task, best, target_std, rng, bags: int = 20):
    """The greedy selection on `bags` bootstrap resamples of the validation rows, weights averaged."""
    from automl.ensemble import select_weights

    total = np.zeros(len(numbers))
    for _ in range(bags):
        rows = rng.integers(0, len(y), len(y))
        weights, _ = select_weights(val[:, rows], y[rows], task, 20, target_std)
        total += weights
    weights = {n: float(w) for n, w in zip(numbers, total / bags) if w > 0}
    return _gate(weights, numbers, val, y, task, best, target_std)


def rule_significant(numbers, val, y, task, best, target_std, rng):
    """The shipped selection, kept only when the paired per-row loss gain is beyond 2 standard errors."""
    from automl.ensemble import EPSILON

    weights = rule_current(numbers, val, y, task, best, target_std, rng)
    index = {n: i for i, n in enumerate(numbers)}
    mixed = sum(w * val[index[n]] for n, w in weights.items())

    def per_row(p):
        if task == "regression":
            return (p.reshape(len(y), -1)[:, 0] - y.reshape(-1)) ** 2
        return -np.log(np.clip(p[np.arange(len(y)), y.astype(int).reshape(-1)], EPSILON, 1.0))

    if best not in index:
        return weights
    gain = per_row(val[index[best]]) - per_row(mixed)
    return weights if gain.mean() > 2 * gain.std(ddof=1) / np.sqrt(len(gain)) else {best: 1.0}


def rule_model_bags(numbers, val, y, task, best, target_std, rng, bags: int = 20):
    """Caruana et al.'s bagged selection: each bag selects from a random half of the trials."""
    from automl.ensemble import select_weights

    total = np.zeros(len(numbers))
    for _ in range(bags):
        some = np.sort(rng.choice(len(numbers), max(1, len(numbers) // 2), replace=False))
        weights, _ = select_weights(val[some], y, task, 20, target_std)
        total[some] += weights
    weights = {n: float(w) for n, w in zip(numbers, total / bags) if w > 0}
    return _gate(weights, numbers, val, y, task, best, target_std)


RULES = {
    "current": rule_current,
    "single": rule_single,
    "bootstrap": rule_bootstrap,
    "significant": rule_significant,
    "model_bags": rule_model_bags,
}


def evaluate(path: Path) -> dict:
    """Each rule's test score (and member count) on one search's kept predictions."""
    d = np.load(path, allow_pickle=True)
    numbers, val, test = list(d["numbers"]), d["val"], d["test"]
    task, y_val, y_test = str(d["task"]), d["y_val"], d["y_test"]
    index = {n: i for i, n in enumerate(numbers)}
    out = {}
    for name, rule in RULES.items():
        weights = rule(numbers, val, y_val, task, int(d["best"]), float(d["target_std"]), np.random.default_rng(0))
        mixed = sum(w * test[index[n]] for n, w in weights.items())
        if task == "regression":
            score = regression_scores(y_test, mixed[:, 0])["r2"]
        else:
            labels = np.asarray(d["class_names"])[mixed.argmax(axis=1)]
            score = scores(y_test, labels.astype(y_test.dtype))["acc"]
        out[name] = {"score": score, "members": len(weights)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="text")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--store", default="/tmp/automl-ensemble-selection")
    p.add_argument("--resume", action="store_true", help="keep searches already stored")
    p.add_argument("--one", nargs=3, metavar=("TASK", "SEED", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        run_search(args.one[0], int(args.one[1]), args.budget, Path(args.one[2]))
        return 0
    tasks, seeds = parse_tasks(args.tasks), [int(s) for s in args.seeds.split(",") if s != ""]
    check_data(tasks)
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    print_header()
    for task in tasks:
        for seed in seeds:
            path = store / f"{task}__s{seed}__b{args.budget:g}.npz"
            if args.resume and path.exists():
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {task} seed {seed} ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--budget", f"{args.budget:g}", "--one", task, str(seed), str(path)]
            subprocess.run(cmd, cwd=ROOT, timeout=args.budget * 3 + 900, check=False)
    print("\nrule minus `current`, test points (accuracy or R²), paired over seeds; mean members")
    names = [n for n in RULES if n != "current"]
    totals: dict[str, list] = {n: [] for n in RULES}
    for task in tasks:
        paths = [store / f"{task}__s{s}__b{args.budget:g}.npz" for s in seeds]
        rows = [evaluate(q) for q in paths if q.exists()]
        if not rows:
            continue
        cells = [f"current {np.mean([r['current']['score'] for r in rows]):.4f} ({len(rows)} seeds)"]
        for name in names:
            diff = 100 * np.asarray([r[name]["score"] - r["current"]["score"] for r in rows])
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            word = "WIN" if diff.mean() > 2 * se else "LOSS" if diff.mean() < -2 * se else "TIE"
            members = np.mean([r[name]["members"] for r in rows])
            cells.append(f"{name} {word} {diff.mean():+.2f} ± {se:.2f} (m {members:.1f})")
        for name in RULES:
            totals[name] += [r[name]["score"] - r["current"]["score"] for r in rows]
        print(f"- {task}: " + "; ".join(cells))
        print("  per seed: " + json.dumps({n: [round(r[n]["score"], 4) for r in rows] for n in RULES}))
    print("all searches: " + "; ".join(f"{n} {100 * np.mean(totals[n]):+.2f}" for n in names if totals[n]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
