"""How often a budget-schedule continuation beats the weights it loads, by how its optimiser restarts.

For each task and candidate (the kind's start configurations and `--candidates` sampled ones, as
bench/portfolio.py draws them), a source trains `--low` epochs (early stopping as in a search) and
is saved as `.keras`; the same saved model is then continued `--rest` epochs three ways, each under
the search's rule that an epoch must beat the loaded weights (BestEpochStopping(start=...)):

- fresh:  what the schedule does (a fresh optimiser, the configuration's schedule, full learning rate)
- warmup: a fresh optimiser whose learning rate rises over the first continuation epoch, then cosine
- low:    a fresh optimiser at a tenth of the learning rate, constant

Prints one JSON line per candidate and the paired summary (validation loss kept at the end,
relative to the loaded weights'). Real Keras training on the suite's fixed splits; no MLflow.

    .venv/bin/python bench/continuation.py                          # six tasks, two kinds of restart
    .venv/bin/python bench/continuation.py --tasks california_housing --candidates 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

VARIANTS = ("fresh", "warmup", "low")


def task_data(task: str):
    """The task's fixed split as automl's Dataset, and its kind's default space (once per task)."""
    from portfolio import default_spaces
    from suite_tasks import TASKS, load

    from automl.data import make_dataset
    from automl.space import load_space

    t, s = TASKS[task], load(task)
    (x, y), (xv, yv) = s["train"], s["val"]
    return make_dataset(x, y, validation_data=(xv, yv), task=t.task, kind=t.kind), load_space(
        default_spaces({})[t.kind]
    )


def continue_one(task: str, ds, space, candidate: dict, low: int, rest: int) -> dict | None:
    import keras
    import optuna

    from automl.builder import build_model
    from automl.records import TrialSettings
    from automl.training import fit_model, training_settings

    study = optuna.create_study()
    study.enqueue_trial(candidate["params"])
    config = space.sample(study.ask())
    training = training_settings(config.training)
    keras.utils.set_random_seed(0)
    model = build_model(config.architecture, ds)
    source = fit_model(model, ds, training, TrialSettings("val_loss", "minimize", epochs=low, pruning=False), [])
    if not all(math.isfinite(v) for v in source.history["val_loss"]):
        return None  # a source that diverged has nothing to continue
    path = Path(tempfile.mkdtemp()) / "source.keras"
    model.save(path)
    row = {"task": task, "candidate": candidate["name"], "source": [round(v, 4) for v in source.history["val_loss"]]}
    for variant in VARIANTS:
        keras.utils.set_random_seed(1)
        m = keras.saving.load_model(path, safe_mode=True)
        tr = dict(training)
        if variant == "warmup":
            tr.update(schedule="warmup", warmup_fraction=1 / rest)
        elif variant == "low":
            tr.update(schedule="constant", learning_rate=training["learning_rate"] / 10)
        settings = TrialSettings("val_loss", "minimize", epochs=rest, pruning=False, from_saved_weights=True)
        start = m.evaluate(ds.x_val, ds.y_val, verbose=0, return_dict=True)["loss"]
        history = fit_model(m, ds, tr, settings, []).history["val_loss"]
        row[variant] = {"start": start, "kept": min(start, min(history)), "epochs": len(history)}
    keras.backend.clear_session()
    return row


def summary(rows: list[dict]) -> list[str]:
    lines = []
    for v in VARIANTS:
        improved = sum(r[v]["kept"] < r[v]["start"] for r in rows)
        change = np.mean([(r[v]["kept"] - r[v]["start"]) / r[v]["start"] for r in rows]) * 100
        lines.append(f"{v}: beat the loaded weights on {improved} of {len(rows)}; mean change {change:+.2f} %")
    for v in VARIANTS[1:]:
        d = np.array([(r[v]["kept"] - r["fresh"]["kept"]) / r["fresh"]["start"] for r in rows]) * 100
        se = d.std(ddof=1) / math.sqrt(len(d))
        verdict = "WIN" if d.mean() < -2 * se else "LOSS" if d.mean() > 2 * se else "TIE"
        lines.append(
            f"{v} - fresh: {d.mean():+.2f} ± {se:.2f} % of the start loss ({verdict}; lower is better); "
            f"better on {(d < -1e-4).sum()}, worse on {(d > 1e-4).sum()}"
        )
    return lines


def main(argv=None) -> int:
    from portfolio import candidates, default_spaces
    from suite_tasks import TASKS, check_data, parse_tasks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="sms_spam,sentiment_yelp,bank_marketing,wine_quality,ucr_ECG200,ucr_GunPoint")
    ap.add_argument("--candidates", type=int, default=2, help="sampled candidates per task beside the start list")
    ap.add_argument("--low", type=int, default=3, help="the source's epochs (a 10-epoch search's low fidelity)")
    ap.add_argument("--rest", type=int, default=7, help="the continuation's epochs")
    args = ap.parse_args(argv)
    tasks = parse_tasks(args.tasks)
    check_data(tasks)
    rows = []
    for task in tasks:
        ds, space = task_data(task)
        cands, _ = candidates(default_spaces({})[TASKS[task].kind], args.candidates, 0)
        for c in cands:
            if c["name"].startswith("hand"):
                continue
            row = continue_one(task, ds, space, c, args.low, args.rest)
            if row is not None:
                print(json.dumps(row), flush=True)
                rows.append(row)
    print("\n".join(summary(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
