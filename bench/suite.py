"""The suite: automl's task classes against KerasTuner and the practitioner's first try, on 18 tasks.

Every (task, method, seed) runs in its own child process on the fixed splits of bench/suite_tasks.py,
with `--budget` seconds of search (the rule of bench/quality.py: no trial starts after the deadline,
the trial in flight stops at the end of the epoch in which it passes), then scores its model on the
test split. Score (higher is better): test accuracy for classification, test R² for regression
(RMSE recorded too).

- `automl`: the task class (ImageClassifier, TextClassifier, SequenceClassifier, TabularClassifier,
  TabularRegressor) with its defaults and `timeout=budget` (since 9b661af a timeout alone lets the
  budget end the search; before, the suite passed max_trials=100000 for that, which is the same
  search); its stores in a temporary folder. `predict` is what is scored, as a user gets it.
  Since 787c9c0 its rows also score that model refit on training + validation rows (`refit_test`,
  `refit_seconds`: what `refit=True` gives, paired with the same search).
- `automl-no-start`: the same with `start=False` (the search alone, without the spaces' start list;
  the task classes' default sampler: `tpe` until 27be004, `tpe-random` since).
- `automl-kt-hyperband`: automl's default space searched by KerasTuner's Hyperband
  (`sampler="kt-hyperband"`, `start=False`): against `kt-hyperband` it separates space from search.
- `kt-random`, `kt-hyperband`: keras_tuner RandomSearch / Hyperband on the hand-written hypermodel of
  the input kind (`hypermodel()` in bench/quality.py), `--epochs` per trial, EarlyStopping(patience=3).
- `reference`, the practitioner's first try (seconds, no search, seed-independent, run once):
  tables HistGradientBoosting with default settings (text columns as pandas categories);
  text TF-IDF word 1-2-grams + LogisticRegression, C in 0.01..100 chosen on validation accuracy;
  sequences and images 1-nearest-neighbour, Euclidean, on the (zero-padded) values / pixels.
  Its rows also carry `refit_test`: the same choice (the chosen C for text) trained again on
  training + validation rows, the fair partner of automl's `refit_test` (since 2026-12-04).
- `automl-no-start-random` (not in the default set): `start=False, sampler="random"`, for the
  "search earns its place" figure (time to reach a score, from the recorded best-so-far curves;
  bench/search_alone.py), printed under the table when both no-start methods are asked for.
- `automl-no-start-tpe-random`, `automl-no-start-tpe` (not in the default set): `start=False` with
  sampler `tpe-random` (TPE with every third trial random) or plain `tpe`, in the same figure.
- `automl-10-trials` (not in the default set): `max_trials=10` with the timeout, a 10-trial cap.
  Up to 81e1d50 that was the task classes' default, and its 10 trials were all short ones, none
  continued (rows `__81e1d50`: that code); since 9b661af a capped search's last trials continue
  the best (rows `__3e7d070`).
- `automl-epochs30` (not in the default set): the task class with `epochs=30`, for choosing a
  kind's epochs default (bench/RESULTS.md "Suite": text at 30 epochs, not adopted at 204bc9e).
  Since c4bfbef the task classes' default follows the training set's size (30 for 1,000 rows or
  fewer), so on such tasks this method is the default.

Results are cached as JSON, one file per task / method / budget / seed, under bench/results/suite/;
automl rows also carry the commit in their name (KerasTuner and reference rows do not depend on our
code, and the reference not on the budget or seed). `--resume` skips what is cached; `--include`
merges rows from other files or folders. Verdict per task, automl against each other method, from the
paired differences over seeds: WIN / LOSS when the mean difference is beyond 2 standard errors, else
TIE (the reference's one score is paired with every seed). Mean rank of the methods over tasks.

    .venv/bin/python bench/suite.py --resume --write            # 18 tasks x 6 methods x 3 seeds x 60 s
    .venv/bin/python bench/suite.py --budget 10 --seeds 0 --tasks digits,wine,ucr_GunPoint,sentiment_yelp
    .venv/bin/python bench/suite.py --budget 240 --tasks mnist_test,sms_spam,ucr_OSULeaf,bank_marketing \\
        --methods automl-no-start,automl-no-start-random --resume --write
    .venv/bin/python bench/suite.py --seeds '' --include bench/results/suite   # report what is cached
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_alone
from header import git, print_header
from quality import MissingData, regression_scores, run_keras_tuner, scores
from suite_tasks import SUITE, TASKS, check_data, describe, load, parse_tasks

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "results" / "suite"
AUTOML = {  # method -> task-class options beyond its defaults
    "automl": {},
    "automl-no-start": {"start": False},
    "automl-kt-hyperband": {"sampler": "kt-hyperband", "start": False},
    "automl-no-start-random": {"start": False, "sampler": "random"},
    "automl-no-start-tpe-random": {"start": False, "sampler": "tpe-random"},
    "automl-no-start-tpe": {"start": False, "sampler": "tpe"},
    "automl-epochs30": {"epochs": 30},  # for choosing a kind's epochs default
    "automl-10-trials": {"max_trials": 10},  # the task classes' default up to 81e1d50
}
METHODS = ("automl", "automl-no-start", "automl-kt-hyperband", "kt-random", "kt-hyperband", "reference")
ALL_METHODS = (
    *METHODS,
    "automl-no-start-random",
    "automl-no-start-tpe-random",
    "automl-no-start-tpe",
    "automl-epochs30",
    "automl-10-trials",
)
MARK = "SUITE-RESULT "


def code_version() -> str:
    """The commit automl rows were measured at; `-dirty` when automl/ or the spaces had edits."""
    rev = git("rev-parse", "--short", "HEAD") or "nogit"
    return rev + ("-dirty" if git("status", "--porcelain", "--", "automl", "search_spaces") else "")


def cache_path(task: str, method: str, seed: int | None, budget: float, commit: str) -> Path:
    """One JSON per row; what a row depends on is in its name."""
    if method == "reference":
        return CACHE / f"{task}__reference.json"
    name = f"{task}__{method}__b{budget:g}__s{seed}"
    return CACHE / (f"{name}__{commit}.json" if method in AUTOML else f"{name}.json")


def metric(task: str) -> str:
    return "r2" if TASKS[task].task == "regression" else "acc"


def task_class(task: str):
    """The automl task class a user of this kind of data picks."""
    import automl

    t = TASKS[task]
    return {
        "image": automl.ImageClassifier,
        "text": automl.TextClassifier,
        "sequence": automl.SequenceClassifier,
        "tabular": automl.TabularRegressor if t.task == "regression" else automl.TabularClassifier,
    }[t.kind]


# ---------------------------------------------------------------- the child: one method on one task


def _predict(model, data, x, regression: bool):
    """A Keras model of the search (raw inputs in) -> labels in the user's values, or numbers."""
    from automl.data import model_inputs

    out = model.predict(model_inputs(data, x), verbose=0)
    return out[:, 0] if regression else np.asarray(data.class_names)[out.argmax(axis=1)]


def trial_log(study, started: float) -> list[tuple[float, float, float]]:
    """(seconds since the search started, validation objective, fidelity) of each complete trial, in
    the order they finished; fidelity = epochs trained / the search's epochs (1.0 without the budget
    schedule's low-fidelity rounds)."""
    from optuna.trial import TrialState

    done = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None),
        key=lambda t: t.datetime_complete,
    )
    return [
        (round(t.datetime_complete.timestamp() - started, 2), float(t.value), float(t.user_attrs.get("fidelity", 1.0)))
        for t in done
    ]


def best_so_far(log: list, direction: str) -> list[tuple[float, float]]:
    """(seconds, best validation objective so far) at each complete trial of `trial_log`."""
    better = min if direction == "minimize" else max
    curve: list[tuple[float, float]] = []
    for seconds, value, _ in log:
        curve.append((seconds, value if not curve else better(curve[-1][1], value)))
    return curve


def run_automl(task: str, method: str, splits: dict, budget: float, seed: int) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    regression = TASKS[task].task == "regression"
    cls = task_class(task)
    score = regression_scores if regression else scores
    (x, y), (x_val, y_val), (x_test, y_test) = splits["train"], splits["val"], splits["test"]

    def progress(study, trial):
        print(
            f"  [{task} {method}] trial {trial.number} {trial.state.name} value={trial.value} "
            f"epochs={trial.user_attrs.get('epochs_run')} t={time.time() - started:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="automl-suite-") as tmp:
        clf = cls(
            timeout=budget,  # without max_trials the budget ends the search
            seed=seed,
            verbose=False,
            storage=str(Path(tmp) / "optuna.journal"),
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            on_trial=progress,
            **AUTOML[method],
        )
        started = time.time()
        result = clf.fit(x, y, validation_data=(x_val, y_val))
        seconds = time.time() - started
        predicted = clf.predict(x_test)  # what the task class gives a user
        seconds_with_model = time.time() - started
        trials = result.trials
        states = trials.state.value_counts().to_dict() if len(trials) else {}
        direction = result.study.direction.name.lower()
        out = {
            "objective": result.objective,
            "best_value": float(result.best_value),
            "seconds": seconds,
            "seconds_with_model": seconds_with_model,
            "trials": int(states.get("COMPLETE", 0) + states.get("PRUNED", 0)),
            "pruned": int(states.get("PRUNED", 0)),
            "failed": int(states.get("FAIL", 0)),
            "fail_reasons": sorted(set(trials[trials.state == "FAIL"].fail_reason.dropna().astype(str)))[:3]
            if len(trials)
            else [],
            "best_trial": result.best_trial.number,
            "best_params": result.best_params,
            "trial_log": trial_log(result.study, started),
            "curve_direction": direction,
            "val": score(y_val, clf.predict(x_val)),
            "test": score(y_test, predicted),
            "model_info": getattr(clf, "model_info", None),
        }
        out["curve"] = best_so_far(out["trial_log"], direction)
        # the ensemble against the single best trial (both on the test split), when the result has one
        out["single_test"] = score(y_test, _predict(clf.best_model(), clf.data, x_test, regression))
        out["ensemble_test"], out["ensemble"] = None, None
        if hasattr(result, "ensemble"):
            try:
                model = result.ensemble()
                out["ensemble_test"] = score(y_test, _predict(model, clf.data, x_test, regression))
                choice = getattr(result, "ensemble_choice", None)
                out["ensemble"] = json.loads(choice.to_json()) if hasattr(choice, "to_json") else None
            except Exception as exc:  # recorded, not fatal: the rest of the row stands
                out["ensemble_error"] = f"{type(exc).__name__}: {exc}"
        # the model predict uses, refit on training + validation rows (what refit=True gives), timed
        out["refit_test"] = None
        if clf.model_info.get("members") and not clf.model_info.get("refit"):
            from automl.refit import refit

            try:
                began = time.time()
                refitted, _ = refit(result, clf.data, clf.model_info["members"], clf.model_info["weights"])
                out["refit_seconds"] = time.time() - began
                out["refit_test"] = score(y_test, _predict(refitted, clf.data, x_test, regression))
            except Exception as exc:  # recorded, not fatal
                out["refit_error"] = f"{type(exc).__name__}: {exc}"
    return out


def run_reference(task: str, splits: dict) -> dict:
    """The practitioner's first try (module docstring); `refit_test` is the same choice (C for text)
    trained again on training + validation rows, the counterpart of automl's `refit_test`."""
    t = TASKS[task]
    (x, y), (x_val, y_val), (x_test, y_test) = splits["train"], splits["val"], splits["test"]
    started = time.perf_counter()
    chosen: dict = {}
    if t.kind == "tabular":
        import pandas as pd
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        text = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c])]
        boosting = HistGradientBoostingRegressor if t.task == "regression" else HistGradientBoostingClassifier

        def fit(xs, ys):
            kinds = {c: pd.CategoricalDtype(sorted(xs[c].dropna().unique())) for c in text}  # unseen -> missing
            as_frame = lambda df: df.astype(kinds) if kinds else df  # noqa: E731
            model = boosting().fit(as_frame(xs), ys)
            return lambda rows: model.predict(as_frame(rows))

        chosen = {"model": boosting.__name__ + "()", "categorical": text}
    elif t.kind == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        def fit_c(texts, ys, c):
            vectorizer = TfidfVectorizer(ngram_range=(1, 2))
            model = LogisticRegression(C=c, max_iter=2000).fit(vectorizer.fit_transform(list(texts)), ys)
            return lambda rows: model.predict(vectorizer.transform(list(rows)))

        accuracy = {c: float(np.mean(fit_c(x, y, c)(x_val) == y_val)) for c in (0.01, 0.1, 1.0, 10.0, 100.0)}
        best_c = max(accuracy, key=lambda c: (accuracy[c], -c))  # ties: the stronger regularisation
        fit = lambda xs, ys: fit_c(xs, ys, best_c)  # noqa: E731
        chosen = {"C": best_c, "val_acc_by_C": accuracy}
    else:  # sequences and images: 1-NN on the raw values
        from sklearn.neighbors import KNeighborsClassifier

        flat = lambda a: np.asarray(a, dtype="float32").reshape(len(a), -1)  # noqa: E731

        def fit(xs, ys):
            model = KNeighborsClassifier(n_neighbors=1).fit(flat(xs), ys)
            return lambda rows: model.predict(flat(rows))

        chosen = {"model": "KNeighborsClassifier(n_neighbors=1)"}
    predict = fit(x, y)
    score = regression_scores if t.task == "regression" else scores
    out = {"val": score(y_val, predict(x_val)), "test": score(y_test, predict(x_test)), "best_params": chosen}
    out.update(seconds=time.perf_counter() - started, trials=0, pruned=0, failed=0)
    out["refit_test"] = score(y_test, fit(_stack(x, x_val), np.concatenate([y, y_val]))(x_test))
    return out


def _stack(a, b):
    """Training and validation rows as one input (a DataFrame or an array)."""
    if hasattr(a, "iloc"):
        import pandas as pd

        return pd.concat([a, b], ignore_index=True)
    return np.concatenate([a, b])


def run_one(task: str, method: str, budget: float, epochs: int, seed: int) -> dict:
    import warnings

    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")  # KerasTuner reload
    check_data([task])
    splits = load(task)
    load_at_start = os.getloadavg()[0]
    commit = code_version() if method in AUTOML else None  # at the start: others may commit meanwhile
    if method in AUTOML:
        out = run_automl(task, method, splits, budget, seed)
    elif method == "reference":
        out = run_reference(task, splits)
    else:
        t = TASKS[task]
        out = run_keras_tuner(
            task, method, splits, budget, epochs, seed, kind=t.kind, regression=t.task == "regression"
        )
    return {
        "task": task,
        "method": method,
        "budget": None if method == "reference" else budget,
        "epochs": epochs if method.startswith("kt-") else None,
        "seed": None if method == "reference" else seed,
        "metric": metric(task),
        "score": out["test"][metric(task)],
        "commit": commit,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "load_at_start": load_at_start,
        **out,
    }


# ---------------------------------------------------------------- the parent


def run_child(task: str, method: str, budget: float, epochs: int, seed: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", task, method]
    cmd += ["--budget", f"{budget:g}", "--epochs", str(epochs), "--seed", str(seed)]
    print(
        f"[{time.strftime('%H:%M:%S')}] {task} / {method} / seed {seed}: {budget:g} s ...", file=sys.stderr, flush=True
    )
    limit = budget * 3 + 600
    row = {"task": task, "method": method, "seed": None if method == "reference" else seed, "budget": budget}
    try:  # the child's progress goes to our stderr; its result is one marked line on stdout
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=limit)
    except subprocess.TimeoutExpired:
        return {**row, "error": f"child killed after {limit:g} s"}
    lines = [line[len(MARK) :] for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        return {**row, "error": f"child exited {proc.returncode} without a result"}
    return json.loads(lines[-1])


def read_rows(path: Path) -> list[dict]:
    """Rows from a JSON file (one row or a list) or every *.json under a folder."""
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    rows: list[dict] = []
    for f in files:
        data = json.loads(f.read_text())
        rows += [r for r in (data if isinstance(data, list) else [data]) if isinstance(r, dict) and "method" in r]
    return rows


def verdict(ours: dict, theirs: dict) -> tuple[str, float, float, int]:
    """WIN / LOSS / TIE of automl (ours: seed -> score) against another method (seed -> score; the
    reference's one score under seed None pairs with every seed): the mean paired difference against
    2 standard errors. Fewer than 2 pairs: '1 seed' (no verdict)."""
    diffs = [
        s - (theirs[seed] if seed in theirs else theirs[None]) for seed, s in ours.items() if {seed, None} & set(theirs)
    ]
    n = len(diffs)
    if n == 0:
        return "-", math.nan, math.nan, 0
    mean = float(np.mean(diffs))
    if n < 2:
        return "1 seed", mean, math.nan, n
    se = float(np.std(diffs, ddof=1) / math.sqrt(n))
    word = "WIN" if mean > 2 * se and mean > 0 else "LOSS" if mean < -2 * se and mean < 0 else "TIE"
    return word, mean, se, n


def _figure(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def report(rows: list[dict], tasks: list[str], methods: list[str], sizes: dict) -> str:
    """The markdown: task x method (mean ± sd of the test score over seeds), automl's verdicts, mean
    ranks; then automl's own figures (trials, ensemble vs single best, RMSE of the regressions)."""
    by = {(t, m): {} for t in tasks for m in methods}
    errors: dict[tuple, list[str]] = {}
    for r in rows:
        key = (r.get("task"), r.get("method"))
        if key in by:
            if "error" in r:
                errors.setdefault(key, []).append(f"seed {r.get('seed')}: {r['error']}")
            else:
                by[key][r.get("seed")] = r
    others = [m for m in methods if m != "automl"]
    head = ["task", "kind, task, train/val/test", "metric", *methods]
    head += [f"automl vs {m}" for m in others] if "automl" in methods else []
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * 3 + " ---: |" * (len(head) - 3)]
    ranks: dict[str, list[float]] = {m: [] for m in methods}
    tally = {m: {"WIN": 0, "TIE": 0, "LOSS": 0} for m in others}
    for task in tasks:
        means = {m: float(np.mean([r["score"] for r in by[task, m].values()])) for m in methods if by[task, m]}
        best = max(means.values()) if means else None
        cells = []
        for m in methods:
            values = [r["score"] for _, r in sorted(by[task, m].items(), key=lambda kv: (kv[0] is None, kv[0]))]
            cell = _figure(values) if values else "-"
            cell = f"**{cell}**" if values and means[m] == best else cell
            failed = errors.get((task, m))
            cells.append(cell + (f" ({len(failed)} failed)" if failed else ""))
        order = sorted(means, key=lambda m: -means[m])
        for m in means:  # average ranks for ties
            tied = [i + 1 for i, o in enumerate(order) if means[o] == means[m]]
            ranks[m].append(float(np.mean(tied)))
        verdicts = []
        if "automl" in methods:
            ours = {s: r["score"] for s, r in by[task, "automl"].items()}
            for m in others:
                word, mean, se, n = verdict(ours, {s: r["score"] for s, r in by[task, m].items()})
                if word in tally[m]:
                    tally[m][word] += 1
                detail = f" {100 * mean:+.2f}" + (f" ± {100 * se:.2f}" if not math.isnan(se) else "") if n else ""
                verdicts.append(word + detail)
        lines.append(f"| {task} | {sizes[task]} | {metric(task)} | " + " | ".join(cells + verdicts) + " |")
    rank_cells = [f"{np.mean(ranks[m]):.2f}" if ranks[m] else "-" for m in methods]
    tally_cells = [f"{tally[m]['WIN']} W / {tally[m]['TIE']} T / {tally[m]['LOSS']} L" for m in others]
    lines.append(
        "| mean rank (1 = best) | | | " + " | ".join(rank_cells + tally_cells[: len(head) - 3 - len(methods)]) + " |"
    )

    extra = [
        "",
        "automl's own figures (mean over seeds): trials finished (pruned), seconds of search, "
        "ensemble (`result.ensemble()`) minus the single best trial on the test split (verdict as above, "
        "points ± standard error; members), the model `predict` uses refit on training + validation rows "
        "(`refit=True`) minus the same model unrefit (test split; seconds of the refit) and against the "
        "reference refit on the same rows, and for regressions "
        "the test RMSE of every method. Mean ranks "
        "are over the tasks where a method has results.",
        "",
    ]
    refit_all: dict[tuple, float] = {}  # (task, seed) -> the refit model's test score; unrefit_all: predict's
    unrefit_all: dict[tuple, float] = {}
    against_reference: dict[str, int] = {}  # verdict -> tasks: refit automl against the refit reference
    for task in tasks:
        mine = list(by[task, "automl"].values()) if "automl" in methods else []
        if not mine:
            continue
        trials = f"{np.mean([r['trials'] for r in mine]):.1f} ({np.mean([r['pruned'] for r in mine]):.1f})"
        pairs = {  # seed -> (ensemble, single best) test scores
            r.get("seed"): (r["ensemble_test"][metric(task)], r["single_test"][metric(task)])
            for r in mine
            if r.get("ensemble_test") and r.get("single_test")
        }
        word, mean, se, n = verdict({s: e for s, (e, _) in pairs.items()}, {s: b for s, (_, b) in pairs.items()})
        members = [len((r.get("ensemble") or {}).get("members", [])) for r in mine if r.get("ensemble")]
        spread = f" ± {100 * se:.2f}" if n > 1 else ""
        ensemble = f"{word} {100 * mean:+.2f}{spread} pt (members {np.mean(members):.1f})" if n else "n/a"
        refit = {r.get("seed"): r["refit_test"][metric(task)] for r in mine if r.get("refit_test")}
        unrefit = {seed: by[task, "automl"][seed]["test"][metric(task)] for seed in refit}
        refit_all.update({(task, seed): v for seed, v in refit.items()})
        unrefit_all.update({(task, seed): v for seed, v in unrefit.items()})
        word, mean, se, n = verdict(refit, unrefit)
        spread = f" ± {100 * se:.2f}" if n > 1 else ""
        seconds_refit = np.mean([r.get("refit_seconds", 0.0) for r in mine if r.get("refit_test")]) if n else 0.0
        refit_figure = f"; refit vs predict {word} {100 * mean:+.2f}{spread} pt ({seconds_refit:.0f} s)" if n else ""
        reference = [
            r["refit_test"][metric(task)] for r in by.get((task, "reference"), {}).values() if r.get("refit_test")
        ]
        if refit and reference:  # both trained again on training + validation rows
            word, mean, se, n = verdict(refit, {None: reference[0]})
            against_reference[word] = against_reference.get(word, 0) + 1
            spread = f" ± {100 * se:.2f}" if n > 1 else ""
            refit_figure += f"; refit vs reference refit {word} {100 * mean:+.2f}{spread} pt"
        rmse = ""
        if TASKS[task].task == "regression":
            parts = [
                f"{m} {np.mean([r['test']['rmse'] for r in by[task, m].values()]):.4g}" for m in methods if by[task, m]
            ]
            rmse = "; RMSE " + ", ".join(parts)
        seconds = np.mean([r["seconds"] for r in mine])
        extra.append(
            f"- {task}: {trials} trials in {seconds:.0f} s; ensemble vs single best {ensemble}{refit_figure}{rmse}"
        )
    if refit_all:
        word, mean, se, n = verdict(refit_all, unrefit_all)
        better = sum(refit_all[k] > unrefit_all[k] for k in refit_all)
        worse = sum(refit_all[k] < unrefit_all[k] for k in refit_all)
        extra.append(
            f"- refit vs predict over all {n} paired searches: {word} {100 * mean:+.2f} ± {100 * se:.2f} pt; "
            f"better on {better}, worse on {worse}"
        )
    if against_reference:
        extra.append(
            "- refit vs reference refit (the practitioner's choice trained again on training + validation rows): "
            + " / ".join(f"{against_reference.get(w, 0)} {w[0]}" for w in ("WIN", "TIE", "LOSS"))
        )
    for (task, m), why in sorted(errors.items()):
        extra.append(f"- failed: {task} / {m}: {'; '.join(why)}")
    return "\n".join(lines + extra + search_alone.section(by, tasks))


def machine() -> str:
    import keras
    import keras_tuner
    import optuna
    import sklearn

    return (
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), {platform.system()}, "
        f"Python {platform.python_version()}, Keras {keras.__version__}, KerasTuner {keras_tuner.__version__}, "
        f"Optuna {optuna.__version__}, scikit-learn {sklearn.__version__}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of search per task, method and seed (60)")
    ap.add_argument("--epochs", type=int, default=10, help="most epochs per KerasTuner trial (10, as automl's)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated search seeds (0,1,2); '' runs nothing")
    ap.add_argument("--tasks", default=",".join(SUITE), help="comma-separated task names or kinds (the suite)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(ALL_METHODS)}")
    ap.add_argument("--resume", action="store_true", help="skip (task, method, seed) rows already cached")
    ap.add_argument("--include", action="append", default=[], metavar="FILE_OR_DIR", help="merge rows from JSON")
    ap.add_argument("--write", action="store_true", help="put the table into bench/RESULTS.md (## Suite)")
    ap.add_argument("--one", nargs=2, metavar=("TASK", "METHOD"), help="(child) one run, its JSON on stdout")
    ap.add_argument("--seed", type=int, default=0, help="(child) the search seed")
    args = ap.parse_args(argv)
    if args.budget <= 0 or args.epochs < 1:
        ap.error("--budget must be positive and --epochs at least 1")
    try:
        tasks = parse_tasks(args.tasks)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as exc:
        ap.error(str(exc))
    methods = [m for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad:
        ap.error(f"unknown method {bad[0]!r} (methods: {', '.join(ALL_METHODS)})")
    if args.one:
        task, method = args.one
        if task not in TASKS or method not in ALL_METHODS:
            ap.error(f"--one TASK METHOD: tasks {', '.join(TASKS)}; methods {', '.join(ALL_METHODS)}")
        print(MARK + json.dumps(run_one(task, method, args.budget, args.epochs, args.seed), default=str), flush=True)
        return 0
    included: list[dict] = []
    for spec in args.include:
        try:
            included += read_rows(Path(spec))
        except (OSError, ValueError) as exc:
            ap.error(f"--include {spec}: {exc}")
    included = [
        r
        for r in included
        if r.get("task") in tasks
        and r.get("method") in methods
        and "error" not in r
        and (r["method"] == "reference" or r.get("budget") == args.budget)
    ]
    check_data(tasks)
    header = print_header()
    commit = code_version()
    command = shlex.join([".venv/bin/python", "bench/suite.py", *(argv if argv is not None else sys.argv[1:])])
    started = time.time()
    fresh: list[dict] = []
    ran = 0
    for task in tasks:  # methods interleaved per task and seed, so drift in machine load hits all alike
        for i, seed in enumerate(seeds):
            for method in methods:
                if method == "reference" and i > 0:
                    continue  # seed-independent: one run serves every seed
                path = cache_path(task, method, seed, args.budget, commit)
                if args.resume and path.exists():
                    fresh.append(json.loads(path.read_text()))
                    continue
                row = run_child(task, method, args.budget, args.epochs, seed)
                ran += 1
                fresh.append(row)
                if "error" in row:
                    print(f"  -> {row['error']}", file=sys.stderr, flush=True)
                    continue
                path = cache_path(task, method, seed, args.budget, row.get("commit") or commit)  # what it ran on
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(row, indent=1, default=str))
                print(
                    f"  -> {row['metric']} {row['score']:.4f} ({row['trials']} trials, {row['seconds']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    # a row of this run (or its cache) replaces an included one; of two included, the later finished
    merged: dict[tuple, dict] = {}
    for r in sorted(included, key=lambda r: r.get("finished") or "") + fresh:
        merged[(r["task"], r["method"], r.get("seed"))] = r
    sizes = {t: describe(t, load(t)) for t in tasks}
    table = report(list(merged.values()), tasks, methods, sizes)
    commits = sorted({r["commit"] for r in merged.values() if r.get("commit")})
    body = "\n".join(
        [
            f"automl's task classes against KerasTuner and the practitioner's first try: {len(tasks)} tasks, "
            f"{args.budget:g} s of search per task, method and seed (one process each), seeds "
            f"{args.seeds or 'from --include'}; KerasTuner at most {args.epochs} epochs per trial. Score: test "
            "accuracy (classification) or test R² (regression), mean ± sd over seeds; bold: the best mean. "
            "Verdict columns: automl against each method from the paired differences over seeds, mean "
            "difference ± standard error in points; WIN / LOSS beyond 2 standard errors, else TIE. Methods, "
            "splits and the reference: bench/suite.py and bench/suite_tasks.py docstrings.",
            "",
            f"Command: `{command}`  ",
            f"Header: {header}  ",
            f"automl rows measured at: {', '.join(commits) or '-'}; {ran} runs now, "
            f"{(time.time() - started) / 60:.0f} min; load average at the end {os.getloadavg()[0]:.2f}  ",
            f"Machine: {machine()}",
            "",
            table,
            "",
        ]
    )
    print()
    print(body)
    if args.write:
        from results_md import RESULTS, write_section

        section = "Suite" if args.budget == 60 else f"Suite, {args.budget:g} s"
        write_section(section, body)
        print(f"(written to {RESULTS.relative_to(ROOT)}, section ## {section})", file=sys.stderr)
    return 1 if any("error" in r for r in fresh) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MissingData as exc:
        sys.exit(exc.code)
