"""`automl predict`: new samples through a finished search's model, from its study alone.

The search records what reading new samples needs (`Dataset.schema()`: kind, task, class names,
table columns) on its study, so predicting needs neither the training data nor Python: the model
`predict` of the task classes uses (the recorded ensemble, else the best trial) reads the file and a
CSV comes out, one row per sample, in the input's order."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .console import err, fail, hide_tensorflow_startup_log, no_study


def predict(
    study: str = typer.Option(..., "--study", help="The search whose model predicts."),
    data: Path = typer.Option(
        ...,
        "--data",
        help="New samples: a CSV or Parquet file (tables; text with --column), a .txt file (one text per line), "
        "an .npz file (array x), or image files (a folder, sorted by path, or one file).",
    ),
    column: str | None = typer.Option(None, "--column", help="A text model's column of a CSV file."),
    target: str | None = typer.Option(
        None,
        "--target",
        help="A column of the file with the true labels or values: left out of the inputs, and the predictions "
        "scored against it (accuracy and log loss, or RMSE, MAE and R²).",
    ),
    trial: int | None = typer.Option(
        None, "--trial", help="Predict with this trial's model (default: the ensemble, else the best trial)."
    ),
    out_file: Path | None = typer.Option(None, "--out", help="Write the CSV here (default: standard output)."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage of the study."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI of the study."),
):
    """Predict new samples with a search's model: a `prediction` column (labels as the training data held
    them, or numbers) and, for classifiers, a probability column per class (`p_LABEL`)."""
    import numpy as np
    import pandas as pd

    from . import records
    from .data import DataError, Dataset, encode_targets, model_inputs
    from .results import load_result

    hide_tensorflow_startup_log()
    try:
        result = load_result(study, storage, tracking_uri)
    except KeyError:
        no_study(study, storage)
    schema = result.study.user_attrs.get(records.DATA_SCHEMA)
    if schema is None:
        fail(f"study {study!r} did not record how to read new samples (run before automl predict existed)")
    ds = Dataset.from_schema(schema)
    try:
        x, files, y = _read(data, ds.kind, column, target)
        inputs = model_inputs(ds, x)
        truth = encode_targets(ds, y) if y is not None else None
    except DataError as exc:
        fail(str(exc))
    if trial is not None:
        try:
            model, which = result.trial_model(trial), f"trial {trial}"
        except (KeyError, ValueError, FileNotFoundError) as exc:  # no such trial, not complete, model not kept
            fail(f"--trial {trial}: {exc.args[0]}")
    else:
        try:
            model, which = _model(result)
        except (ValueError, FileNotFoundError) as exc:  # no complete trial, or its model was not kept
            fail(f"study {study!r} has no model to predict with: {exc}", code=1)
    outputs = model.predict(inputs, verbose=0)
    err.print(f"predicted {len(outputs)} samples with {which}", soft_wrap=True)
    if truth is not None:
        scores = ", ".join(f"{k} {v:.4g}" for k, v in scored(ds.task, outputs, truth).items())
        err.print(f"scored against {data}'s column {target!r}: {scores}", soft_wrap=True)
    table = pd.DataFrame({"file": [str(f) for f in files]}) if files else pd.DataFrame(index=range(len(outputs)))
    if ds.task == "regression":
        table["prediction"] = outputs[:, 0]
    else:
        names = ds.class_names or []
        table["prediction"] = np.asarray(names, dtype=object)[outputs.argmax(axis=1)]
        for i, name in enumerate(names):
            table[f"p_{name}"] = outputs[:, i]
    table.to_csv(out_file if out_file is not None else sys.stdout, index=False)
    if out_file is not None:
        err.print(f"written: {out_file}", soft_wrap=True)


def _read(path: Path, kind: str, column: str | None, target: str | None):
    """(samples as `model_inputs` takes them, the image files they came from or None, the `target`
    column's labels or None)."""
    from .data import DataError
    from .images import IMAGE_SUFFIXES, image_files
    from .readers import read_labelled_file, read_samples_file

    if kind == "image" and (path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES):
        if target is not None:
            raise DataError(f"{path}: --target names a column of a CSV or Parquet file, not of images")
        return path, image_files(path), None
    if target is not None:
        x, y = read_labelled_file(path, kind, target, column)
        return x, None, y
    return read_samples_file(path, kind, column), None, None


def scored(task: str, outputs, truth) -> dict[str, float]:
    """The export table's metric of the outputs against the true targets (`export.evaluate.score`:
    accuracy, or MAE and RMSE in the target's units), with the log loss of the predicted probabilities,
    or R² against the scored rows' own mean."""
    import numpy as np

    from .export.evaluate import score

    scores = score(task, truth, outputs)
    if task == "regression":
        total = float(((truth - truth.mean()) ** 2).sum())
        scores["r2"] = 1.0 - scores["rmse"] ** 2 * len(truth) / total if total > 0 else float("nan")
    else:
        picked = outputs[np.arange(len(truth)), truth]
        scores["log_loss"] = float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())
    return scores


def _model(result):
    """The model the task classes' `predict` uses: the ensemble recorded on the study, else the best trial."""
    from . import ensemble

    found = ensemble.load(result)
    if found is not None:
        model, choice = found
        if len(choice.members) == 1:
            return model, f"trial {choice.members[0]} (the ensemble's choice: no mix beat it)"
        weights = ", ".join(f"{n} x{w:.2f}" for n, w in zip(choice.members, choice.weights))
        return model, f"the ensemble of trials {weights}"
    return result.best_model(), f"trial {result.best_trial.number}, the best"
