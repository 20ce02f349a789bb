"""Task-level classes in the AutoKeras style, on top of `automl.Search`.

Each is a `Search` fixed to one kind of input and task, with that kind's default space:
`fit` checks and splits the data and runs the trials (every trial is logged to MLflow by the
search), then `predict` / `evaluate` / `best_model` / `export` use the best trial's model.
Predictions come back in the user's own label values.

    clf = automl.TextClassifier(max_trials=5, seed=0)
    clf.fit(texts, labels, validation_split=0.2)
    clf.predict(["a new text"])            # -> array(['positive'])
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .data import (
    DataError,
    Dataset,
    attach_unlabeled,
    encode_targets,
    labelled_folder,
    load_table,
    make_dataset,
    model_inputs,
)
from .results import SearchResult
from .search import DEFAULT_SPACES, Search

OBJECTIVE = "val_loss"  # the task classes' defaults (bench/suite.py measures them); why: _Task.__init__
SAMPLER = "tpe-random"
SCHEDULE = "budget"
SAMPLES_SEEN = 30_000  # training samples a full-length trial sees at least, when the user sets no epochs
EPOCHS = (10, 30)  # the least and most of that default


def default_epochs(num_train: int) -> int:
    """Full-length epochs per trial for `num_train` training samples when the user sets none: enough
    to see SAMPLES_SEEN samples, between 10 and 30. Why: a fixed 10 epochs is ~170 steps on 1079 8x8
    digits, where the first start configuration was still improving (validation loss 0.19 after 10
    epochs, 0.08 at its best epoch 26; test accuracy 0.947 against 0.969), while data of 3000 rows and
    more keeps 10 (bench/RESULTS.md "Suite")."""
    low, high = EPOCHS
    return max(low, min(high, math.ceil(SAMPLES_SEEN / max(1, num_train))))


def task_settings(kind: str, num_train: int) -> dict[str, Any]:
    """The settings a task class searches with unless told otherwise, for data of `kind` with
    `num_train` training samples: what `automl search` without a SPACE uses too, so a command-line
    user gets the defaults bench/suite.py measured (`Search`'s own stay plain: tpe, 10 epochs)."""
    return {
        "space": DEFAULT_SPACES[kind],
        "objective": OBJECTIVE,
        "sampler": SAMPLER,
        "epochs": default_epochs(num_train),
        "ensemble": True,
        "schedule": SCHEDULE,
    }


class _Task:
    kind = ""
    task = "classification"

    def __init__(
        self,
        max_trials: int | None = None,
        timeout: float | None = None,
        seed: int | None = None,
        study_name: str | None = None,
        *,
        space=None,
        epochs: int | None = None,
        ensemble: bool = True,
        ensemble_size: int = 20,
        refit: bool = False,
        schedule: str = SCHEDULE,
        **search_options: Any,
    ):
        """`max_trials`: default 10, or, with a `timeout`, as many as the time holds (automl.Search).
        `space`: a space file, shipped space name or `SearchSpace` (default: the kind's shipped
        space); `epochs`: the most epochs per trial (default: by the training set's size, 10 for
        3000 samples and more, up to 30 for small ones; `default_epochs`); other keywords go to `automl.Search`
        (storage, tracking_uri, experiment, sampler, pruner, objective, patience, verbose...).

        The objective defaults to `val_loss` for classifiers too (as in AutoKeras): on a validation
        split of hundreds of samples accuracy moves in steps of one sample and the trial that tops it
        is often the luckiest, while the cross-entropy uses every prediction's confidence
        (bench/RESULTS.md, Quality). Pass `objective="val_accuracy"` for the other rule.

        The sampler defaults to `tpe-random` (TPE with every third trial random, BOHB's share, not
        tuned here): at 240 s on three kinds it matched or beat plain TPE's mean test score on each
        and kept a sequence search out of the near-chance region TPE stayed in (bench/RESULTS.md
        "Suite, 240 s"). `Search` itself keeps `tpe`.

        `ensemble` (default on): predictions come from the top trials' weighted mean when it lowers
        the validation loss (automl.ensemble), else from the best trial. `refit=True`: the chosen
        model (each ensemble member) is trained again on training + validation rows for the epochs
        its trial found best (automl.refit); `model_info` says which model `predict` uses.
        `schedule="budget"` (the default; it acts only with a `timeout`): explore at low fidelity,
        then continue the best candidates to full length (automl.schedule); `"full"` for plain trials."""
        if "objective" not in search_options and not search_options.get("objectives"):
            search_options["objective"] = OBJECTIVE
        search_options.setdefault("sampler", SAMPLER)
        self.search = Search(
            space if space is not None else DEFAULT_SPACES[self.kind],
            study_name=study_name,
            max_trials=max_trials,
            timeout=timeout,
            seed=seed,
            ensemble=ensemble,
            ensemble_size=ensemble_size,
            schedule=schedule,
            **search_options,
        )
        self.epochs, self.refit = epochs, refit
        self.model_info: dict[str, Any] = {}  # what predict uses: members, weights, refit
        self.data: Dataset | None = None
        self.result: SearchResult | None = None
        self._model = None

    def fit(
        self,
        x,
        y=None,
        *,
        validation_data=None,
        validation_split: float = 0.2,
        epochs: int | None = None,
        unlabeled=None,
        **read_options: Any,
    ):
        """Search on (x, y); returns the `SearchResult` (also kept as `self.result`).

        Without `validation_data`, `validation_split` of the samples are held out (stratified for
        classes). `read_options` go to `make_dataset` (e.g. `image_size=(h, w)` for a folder).
        Fitting the same data again resumes its study up to `max_trials` (with only a timeout: for
        another timeout). `unlabeled`: images or series without labels (arrays, an `.npz` with
        `x`, a folder of images) that the space's `pretrain:` stage pretrains on (self-supervised,
        automl.pretraining) before fine-tuning.
        """
        named = isinstance(x, (str, Path))
        self.data = make_dataset(
            x,
            y,
            validation_data=validation_data,
            validation_split=validation_split,
            task=self.task,
            kind=self.kind,
            name=Path(x).name if named else self.kind,
            seed=self.search.seed or 0,
            **read_options,
        )
        if unlabeled is not None:
            attach_unlabeled(self.data, unlabeled)
        if not named:  # a study per data set: a refit resumes, other data starts a new study
            self.data.name = f"{self.kind}-{self.data.fingerprint()[:8]}"
        self.result = self.search.fit(
            data=self.data, epochs=epochs or self.epochs or default_epochs(self.data.num_train)
        )
        self._model = None
        if self.refit:
            self.model()  # trained now, as part of fit
        return self.result

    def best_model(self):
        """The best trial's trained Keras model (takes raw inputs: strings, columns, padded sequences)."""
        result, _ = self._fitted()
        from . import blocks  # noqa: F401 - registers the custom layers a saved model refers to

        return result.best_model()

    def model(self):
        """The model `predict` uses: the ensemble (one member when mixing does not help) or, with
        `ensemble=False`, the best trial's; refit on training + validation rows with `refit=True`.
        `model_info` says which trials, with which weights."""
        result, data = self._fitted()
        if self._model is not None:
            return self._model
        from . import blocks  # noqa: F401 - registers the custom layers a saved model refers to

        note = None
        if self.search.ensemble:
            try:
                model = result.ensemble(data, self.search.ensemble_size)
            except Exception as exc:  # the best trial still answers; model_info says why
                note = f"no ensemble: {type(exc).__name__}: {exc}"
        if self.search.ensemble and note is None:
            assert result.ensemble_choice is not None  # set by ensemble()
            members, weights = result.ensemble_choice.members, result.ensemble_choice.weights
        else:
            model, members, weights = result.best_model(), [result.best_trial.number], [1.0]
        self.model_info = {"refit": False, "members": members, "weights": weights, "train_samples": data.num_train}
        if note:
            self.model_info["note"] = note
        if self.refit:
            from .refit import refit

            model, self.model_info = refit(result, data, members, weights, space=self.search.space)
        self._model = model
        return model

    def predict(self, x) -> np.ndarray:
        """Class labels (the values `y` held) or regression targets, one per sample. `x` as `fit` took
        it; an image model also takes image files (a folder, in sorted path order; a file; a list)."""
        out = self.model().predict(self._inputs(x), verbose=0)
        if self.task == "regression":
            return out[:, 0]
        _, data = self._fitted()
        return np.asarray(data.class_names)[out.argmax(axis=1)]

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities, columns in the order of `classes_`."""
        if self.task != "classification":
            raise TypeError("predict_proba is for classifiers")
        return self.model().predict(self._inputs(x), verbose=0)

    @property
    def classes_(self) -> list | None:
        _, data = self._fitted()
        return data.class_names

    def evaluate(self, x, y=None) -> dict[str, float]:
        """Loss and metrics (accuracy, or mae for regression) of `model()` on (x, y); the loss as the
        search's trials measure it (for regression: squared error over the training target's variance).
        Without `y`, `x` is a folder with one sub-folder (or `.txt` file) per class, as `fit` takes;
        with a table file (CSV, Parquet), `y` may name its target column, as in `fit`."""
        from .training import loss_and_metrics

        model = self.model()
        _, data = self._fitted()
        if y is None:
            x, y = labelled_folder(data, x)
        elif isinstance(y, str) and isinstance(x, (str, Path)):  # a table file and its target column, as fit
            x, y = load_table(x, y)
        targets = encode_targets(data, y)
        inputs = self._inputs(x)
        if len(targets) != _length(inputs):
            raise DataError(f"x has {_length(inputs)} samples but y has {len(targets)}")
        loss, metrics = loss_and_metrics(self.task, target_std=data.target_std)  # the search's val_loss
        model.compile(loss=loss, metrics=metrics)  # a fresh compile: evaluation only
        return {k: float(v) for k, v in model.evaluate(inputs, targets, verbose=0, return_dict=True).items()}

    def export(self, out_dir: str | Path, **options: Any):
        """Write the model `predict` uses as `.keras`, SavedModel and TFLite files, each measured on
        the validation split: the ensemble (default) or the best trial (`ensemble=False`, or a
        `trial=N` option), logged to MLflow and registered (`SearchResult.export`, whose options
        apply: formats, register, latency_runs...). A refit model (`refit=True`) has trained on the
        validation rows: it is exported and measured, but not logged, and its scores there are
        optimistic. Returns the export report."""
        result, data = self._fitted()
        options.setdefault("verbose", self.search.verbose)
        if self.refit and "trial" not in options:
            from .export import export_model

            meta = {"title": f"{result.study.study_name} refit on training + validation rows", **self.model_info}
            keep = ("formats", "representative_samples", "int8_io", "batch_size", "latency_runs", "threads", "verbose")
            return export_model(
                self.model(), out_dir, data=data, meta=meta, **{k: options[k] for k in keep if k in options}
            )
        options.setdefault("ensemble", self.search.ensemble and "trial" not in options)
        return result.export(out_dir, data=data, **options)

    def _inputs(self, x):
        _, data = self._fitted()
        return model_inputs(data, x)

    def _fitted(self) -> tuple[SearchResult, Dataset]:
        """The search's result and data; a clear error before `fit` has finished."""
        if self.result is None or self.data is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(x, y) first")
        return self.result, self.data


def _length(inputs) -> int:
    return len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)


class ImageClassifier(_Task):
    """Images: (n, h, w[, c]) arrays or a folder with one sub-folder per class."""

    kind = "image"


class TextClassifier(_Task):
    """Texts: a list/array of strings, or a folder / `.txt` file per class. The model takes raw strings."""

    kind = "text"


class SequenceClassifier(_Task):
    """Sequences: padded (n, steps[, features]) arrays or a list of variable-length arrays (masked)."""

    kind = "sequence"


class TabularClassifier(_Task):
    """Tables: numeric arrays, DataFrames or a CSV path (`y` = target column name); categorical
    columns and missing values are handled inside the model."""

    kind = "tabular"


class TabularRegressor(TabularClassifier):
    """Like `TabularClassifier`, predicting a number (trained on the standardised target)."""

    task = "regression"


class ImageRegressor(ImageClassifier):
    """Like `ImageClassifier`, predicting a number (an age, a count, a score)."""

    task = "regression"


class TextRegressor(TextClassifier):
    """Like `TextClassifier`, predicting a number (a rating, a price)."""

    task = "regression"


class SequenceRegressor(SequenceClassifier):
    """Like `SequenceClassifier`, predicting a number per sequence (not the next steps: no forecasting)."""

    task = "regression"
