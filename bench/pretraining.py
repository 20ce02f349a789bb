"""Self-supervised pretraining, measured (issue 21): the same search with and without unlabeled samples,
at equal wall-clock budget.

Tasks (fixed seeded splits of bench/suite_tasks.py):
- `mnist_test`: its train + val digits (5000) are the pool; a stratified `fraction` of them keep their
  labels (1 %: 50 digits), the rest are given as unlabeled samples; its 2000 test digits score.
- `ucr_OSULeaf` (or another UCR task): its TRAIN file (200 leaf outlines) is the pool, a stratified
  `fraction` keeps labels; its TEST file (242) scores.
Methods, same labelled samples, seed and budget: `supervised` is the task class (ImageClassifier /
SequenceClassifier) with its defaults and `timeout=BUDGET`; `pretrained` is the same call with
`unlabeled=` (the default space then searches its `pretrain:` stage; its first start configuration
pretrains). The search's own validation split comes out of the labelled samples, as for a user.
Reported per seed: test accuracy of `predict` (the task class's answer, ensemble or single model),
trials finished, seconds spent pretraining; per fraction the paired difference and WIN / LOSS / TIE
beyond 2 standard errors. Each run is cached as JSON in bench/results/ssl/ (`--resume` reuses them).

    .venv/bin/python bench/ssl.py --task mnist_test --fractions 0.01,0.1 --seeds 0,1,2 --budget 300
    .venv/bin/python bench/ssl.py --task ucr_OSULeaf --fractions 0.2 --seeds 0,1,2 --budget 120
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import header
import suite_tasks

METHODS = ("supervised", "pretrained")
RESULTS = Path(__file__).resolve().parent / "results" / "ssl"


def split(task: str, fraction: float, seed: int):
    """(labelled x, labelled y, unlabeled x, test x, test y): a stratified `fraction` of the pool keeps labels."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    s = suite_tasks.load(task)
    # the pool: the suite's train + val (mnist_test: 5000 digits; a UCR task: its TRAIN file)
    x = np.concatenate([s["train"][0], s["val"][0]])
    y = np.concatenate([s["train"][1], s["val"][1]])
    classes = len(np.unique(y))
    n = max(round(fraction * len(y)), 2 * classes)
    labelled, unlabeled = train_test_split(np.arange(len(y)), train_size=n, random_state=seed, stratify=y)
    return x[labelled], y[labelled], x[unlabeled], s["test"][0], s["test"][1]


def run(task: str, fraction: float, seed: int, method: str, budget: float) -> dict:
    import numpy as np
    from mlflow.tracking import MlflowClient

    import automl

    x, y, x_unlabeled, x_test, y_test = split(task, fraction, seed)
    kind = suite_tasks.TASKS[task].kind
    cls = automl.ImageClassifier if kind == "image" else automl.SequenceClassifier
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"storage": f"{tmp}/optuna.journal", "tracking_uri": f"sqlite:///{tmp}/mlflow.db"}
        clf = cls(max_trials=1000, timeout=budget, seed=seed, verbose=False, **stores)
        started = time.time()
        clf.fit(x, y, unlabeled=x_unlabeled if method == "pretrained" else None)
        predicted = clf.predict(x_test)
        wall = time.time() - started
        study = clf.result.study
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        client = MlflowClient(stores["tracking_uri"])
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
        pretrainings = [r for r in runs if r.data.tags.get("automl.role") == "pretrain"]
        best = study.best_trial
        rows = [  # number, state, value, pretrained, seconds
            [
                t.number,
                t.state.name,
                t.value,
                "pretrain_run" in t.user_attrs,
                (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None,
            ]
            for t in study.trials
        ]
    return {
        "task": task,
        "fraction": fraction,
        "seed": seed,
        "method": method,
        "budget": budget,
        "labelled": len(y),
        "unlabeled": len(x_unlabeled) if method == "pretrained" else 0,
        "test_accuracy": float(np.mean(np.asarray(predicted) == y_test)),
        "wall_seconds": wall,
        "trials": len(complete),
        "pretrained_trials": sum("pretrain_run" in t.user_attrs for t in complete),
        "best_pretrained": "pretrain_run" in best.user_attrs,
        "pretrainings": len(pretrainings),
        "pretrain_seconds": sum(r.data.metrics.get("pretrain_seconds", 0.0) for r in pretrainings),
        "model": clf.model_info.get("members") if clf.model_info else None,
        "trial_rows": rows,
        "commit": header.commit(),
    }


def cached(task: str, fraction: float, seed: int, method: str, budget: float, resume: bool) -> dict:
    path = RESULTS / f"{task}_{fraction:g}_{budget:g}s_{method}_seed{seed}.json"
    if resume and path.is_file():
        return json.loads(path.read_text())
    print(f"[{time.strftime('%H:%M:%S')}] {task} {fraction:.0%} seed {seed} {method} ...", file=sys.stderr, flush=True)
    result = run(task, fraction, seed, method, budget)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def verdict(diffs: list[float]) -> str:
    if len(diffs) < 2:
        return f"{diffs[0] * 100:+.1f} pt (1 seed)" if diffs else "-"
    mean = statistics.mean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    word = "WIN" if mean > 2 * se else "LOSS" if mean < -2 * se else "TIE"
    return f"{mean * 100:+.1f} ± {se * 100:.1f} pt: {word}"


def table(results: list[dict]) -> list[str]:
    lines = [
        "| task | labels | seed | supervised | pretrained | trials (sup / pre, pretrained) | pretraining s "
        "| best pretrained |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    by = {(r["task"], r["fraction"], r["seed"], r["method"]): r for r in results}
    groups: dict[tuple, list[float]] = {}
    for task, fraction, seed in sorted({k[:3] for k in by}):
        sup, pre = by.get((task, fraction, seed, "supervised")), by.get((task, fraction, seed, "pretrained"))
        if not sup or not pre:
            continue
        groups.setdefault((task, fraction), []).append(pre["test_accuracy"] - sup["test_accuracy"])
        lines.append(
            f"| {task} | {fraction:.0%} ({sup['labelled']}) | {seed} | {sup['test_accuracy']:.3f} | "
            f"{pre['test_accuracy']:.3f} | {sup['trials']} / {pre['trials']}, {pre['pretrained_trials']} | "
            f"{pre['pretrain_seconds']:.0f} ({pre['pretrainings']}) | {pre['best_pretrained']} |"
        )
    lines.append("")
    for (task, fraction), diffs in groups.items():
        lines.append(
            f"- {task}, {fraction:.0%} labels: pretrained - supervised = {verdict(diffs)} ({len(diffs)} seeds)"
        )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="mnist_test")
    ap.add_argument("--fractions", default="0.01,0.05,0.1", help="shares of the pool that keep their labels")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds per search (both methods)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--resume", action="store_true", help="reuse cached runs of the same task/fraction/seed/budget")
    args = ap.parse_args(argv)
    try:
        suite_tasks.check_data([args.task])
    except suite_tasks.MissingData as exc:
        return int(exc.args[0])
    header.print_header()
    results = []
    for fraction in [float(f) for f in args.fractions.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for method in args.methods.split(","):
                results.append(cached(args.task, fraction, seed, method, args.budget, args.resume))
    print(f"budget {args.budget:g} s per search; {' '.join(sys.argv)}")
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
