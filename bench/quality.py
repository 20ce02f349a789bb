"""Search quality at equal wall-clock budget: our default search vs KerasTuner's three tuners.

For each task (real data in ../shared/data, fixed seeded train/val/test splits) and each method,
one child process searches for `--budget` seconds, then evaluates its best model on the TEST split:

- `automl`: the default search of the task class (ImageClassifier, TextClassifier,
  SequenceClassifier, TabularClassifier: the shipped space for the input kind, objective val_loss,
  TPE sampler, median pruner, 10 epochs per trial with early stopping) with `timeout=budget`. Optuna and MLflow
  stores go to a temporary folder, not mlruns/.
- `kt-random`, `kt-bayesian`, `kt-hyperband`: keras_tuner.RandomSearch / BayesianOptimization /
  Hyperband with KerasTuner's default settings on a hand-written `build_model(hp)` per input kind
  (below; bench/suite.py uses them too), the same 10 epochs per trial and EarlyStopping(patience=3)
  as a careful user would add.

The budget is enforced the same way on both sides: no trial starts after the deadline, and the
trial in flight stops at the end of the epoch during which the deadline passes (our `Search`
timeout does exactly this; KerasTuner gets the same rule through its tuner hooks). `seconds` is
the whole search call, setup and teardown included. The parent prints one table and, unless
`--no-write`, replaces the `## Quality` section of bench/RESULTS.md with it (bench/results_md.py).
Other benches import `read_idx`, `check_data` and `load_task` from here (one reader, same splits).

    .venv/bin/python bench/quality.py                          # 4 tasks x 4 methods x 90 s, ~30 min
    .venv/bin/python bench/quality.py --tasks ucr_ECG200 --budget 20 --no-write   # smoke run
    .venv/bin/python bench/quality.py --one sms_spam automl --budget 90           # one child, JSON out
    .venv/bin/python bench/quality.py --seeds 1,2 --include seed0.json --json seeds12.json  # mean ± sd over seeds
    .venv/bin/python bench/quality.py --seeds '' --include a.json --include b.json          # report earlier runs
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from header import git, print_header

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("AUTOML_BENCH_DATA", ROOT.parent / "shared" / "data"))
TASKS = ("mnist_test", "sms_spam", "ucr_ECG200", "bank_marketing")
METHODS = ("automl", "kt-random", "kt-bayesian", "kt-hyperband")
KIND = {"mnist_test": "image", "sms_spam": "text", "ucr_ECG200": "sequence", "bank_marketing": "tabular"}
NEEDS = {
    "mnist_test": ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
    "sms_spam": ["SMSSpamCollection"],
    "ucr_ECG200": ["ECG200_TRAIN.txt", "ECG200_TEST.txt"],
    "bank_marketing": ["bank.csv"],
}
SEED = 0  # the fixed splits; each search's own seed is --seed / --seeds
MARK = "QUALITY-RESULT "  # the child's one result line on stdout


class MissingData(SystemExit):
    pass


def check_data(tasks) -> None:
    """Say what is missing and exit non-zero: a benchmark on absent data must not pretend."""
    if not DATA_DIR.is_dir():
        print(
            f"error: data folder {DATA_DIR} is absent (expected ../shared/data next to the repository, "
            f"or AUTOML_BENCH_DATA=FOLDER); nothing was run",
            file=sys.stderr,
        )
        raise MissingData(2)
    missing = [str(DATA_DIR / t / f) for t in tasks for f in NEEDS[t] if not (DATA_DIR / t / f).is_file()]
    if missing:
        print(f"error: data files are missing: {', '.join(missing)}; nothing was run", file=sys.stderr)
        raise MissingData(2)


# ---------------------------------------------------------------- format readers and fixed splits


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip): magic (0, 0, dtype 0x08 = uint8, ndim), big-endian sizes, then the data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {data.size} values")
    return data.reshape(shape)


def _split(x, y, n_val: int, n_test: int, n_train: int | None = None, seed: int = SEED):
    """Stratified train/val/test split of (x, y) by sample counts; x may be an array or a DataFrame."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    if n_train is not None and n_train + n_val + n_test < len(y):  # a stratified subsample first
        idx, _ = train_test_split(idx, train_size=n_train + n_val + n_test, random_state=seed, stratify=y)
    rest, test_idx = train_test_split(idx, test_size=n_test, random_state=seed, stratify=y[idx])
    train_idx, val_idx = train_test_split(rest, test_size=n_val, random_state=seed, stratify=y[rest])
    take = (lambda i: x.iloc[i].reset_index(drop=True)) if hasattr(x, "iloc") else (lambda i: x[i])
    return {
        "train": (take(train_idx), y[train_idx]),
        "val": (take(val_idx), y[val_idx]),
        "test": (take(test_idx), y[test_idx]),
    }


def load_task(task: str) -> dict:
    """Raw inputs and raw labels (as a user has them) for the fixed splits of one task."""
    d = DATA_DIR / task
    if task == "mnist_test":  # a stratified 7000 of the 10000 test digits: 4000 train / 1000 val / 2000 test
        x = read_idx(d / "t10k-images-idx3-ubyte.gz")
        y = read_idx(d / "t10k-labels-idx1-ubyte.gz").astype("int64")
        return _split(x, y, n_train=4000, n_val=1000, n_test=2000)
    if task == "sms_spam":  # stratified 60/20/20
        labels, texts = [], []
        for n, line in enumerate((d / "SMSSpamCollection").read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            label, sep, text = line.partition("\t")
            if not sep:
                raise ValueError(f"{d / 'SMSSpamCollection'}: line {n} has no tab")
            labels.append(label)
            texts.append(text)
        n = len(labels)
        return _split(np.array(texts, dtype=object), np.array(labels), n_val=round(0.2 * n), n_test=round(0.2 * n))
    if task == "ucr_ECG200":  # the archive's TRAIN file -> 80 train / 20 val; its TEST file is the test split
        from sklearn.model_selection import train_test_split

        train, test = np.loadtxt(d / "ECG200_TRAIN.txt"), np.loadtxt(d / "ECG200_TEST.txt")
        x, y = train[:, 1:].astype("float32"), train[:, 0].astype("int64")
        tr, va = train_test_split(np.arange(len(y)), test_size=0.2, random_state=SEED, stratify=y)
        return {
            "train": (x[tr], y[tr]),
            "val": (x[va], y[va]),
            "test": (test[:, 1:].astype("float32"), test[:, 0].astype("int64")),
        }
    if task == "bank_marketing":  # stratified 60/20/20; 9 text (categorical) columns, 7 numeric
        import pandas as pd

        df = pd.read_csv(d / "bank.csv", sep=";")
        y = df.pop("y").to_numpy().astype(str)
        return _split(df, y, n_val=round(0.2 * len(y)), n_test=round(0.2 * len(y)))
    raise ValueError(f"unknown task {task!r} (tasks: {', '.join(TASKS)})")


def encode(splits: dict) -> tuple[dict, list]:
    """Labels -> 0..K-1 (sorted classes, as automl orders them) for the KerasTuner models."""
    classes = sorted(np.unique(splits["train"][1]).tolist())
    return {k: (x, np.searchsorted(classes, y).astype("int32")) for k, (x, y) in splits.items()}, classes


def scores(y_true, y_pred) -> dict:
    """Accuracy, balanced accuracy and F1 (binary: of the rarer class; else macro)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels, counts = np.unique(y_true, return_counts=True)
    f1 = (
        f1_score(y_true, y_pred, pos_label=labels[np.argmin(counts)])
        if len(labels) == 2
        else f1_score(y_true, y_pred, average="macro")
    )
    return {
        "acc": float(np.mean(y_true == y_pred)),
        "bal_acc": float(balanced_accuracy_score(y_true, y_pred)),
        "f1": float(f1),
    }


def regression_scores(y_true, y_pred) -> dict:
    """R² and root mean squared error (in the target's units)."""
    from sklearn.metrics import r2_score

    y_true, y_pred = np.asarray(y_true, dtype="float64"), np.asarray(y_pred, dtype="float64")
    return {"r2": float(r2_score(y_true, y_pred)), "rmse": float(np.sqrt(np.mean((y_true - y_pred) ** 2)))}


# ---------------------------------------------------------------- method 1: our default search


def run_automl(task: str, splits: dict, budget: float, epochs: int, seed: int = 0) -> dict:
    import optuna

    import automl

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cls = {
        "mnist_test": automl.ImageClassifier,
        "sms_spam": automl.TextClassifier,
        "ucr_ECG200": automl.SequenceClassifier,
        "bank_marketing": automl.TabularClassifier,
    }[task]
    (x, y), (x_val, y_val), (x_test, y_test) = splits["train"], splits["val"], splits["test"]

    def progress(study, trial):
        print(
            f"  [{task} automl] trial {trial.number} {trial.state.name} value={trial.value} "
            f"epochs={trial.user_attrs.get('epochs_run')} t={time.perf_counter() - started:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="automl-quality-") as tmp:
        # the default search: the kind's shipped space, TPE + median pruner, early stopping, as many
        # trials as the timeout allows; private Optuna/MLflow stores so mlruns/ stays clean
        clf = cls(
            max_trials=100_000,
            timeout=budget,
            seed=seed,
            epochs=epochs,
            verbose=False,
            storage=str(Path(tmp) / "optuna.journal"),
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            on_trial=progress,
        )
        started = time.perf_counter()
        result = clf.fit(x, y, validation_data=(x_val, y_val))
        seconds = time.perf_counter() - started
        trials = result.trials
        states = trials.state.value_counts().to_dict() if len(trials) else {}
        out = {
            "objective": result.objective,
            "best_value": float(result.best_value),
            "seconds": seconds,
            "trials": int(states.get("COMPLETE", 0) + states.get("PRUNED", 0)),
            "pruned": int(states.get("PRUNED", 0)),
            "failed": int(states.get("FAIL", 0)),
            "best_params": result.best_params,
        }
        out["val"] = scores(y_val, clf.predict(x_val))
        out["val_acc"] = out["val"]["acc"]  # the best model's; the search ranks trials by its objective
        out["test"] = scores(y_test, clf.predict(x_test))
    return out


# ---------------------------------------------------------------- methods 2-4: KerasTuner, hand-written hypermodels


def hypermodel(kind: str, data: dict, classes: list | None, name: str = "task"):
    """A sensible KerasTuner hypermodel per input kind (image, text, sequence, tabular), written as a
    KerasTuner user would: preprocessing learnt from the training split, the usual knobs (depth, width,
    kernel, dropout, learning rate, batch size) and a compiled model with accuracy; `classes=None`:
    regression (one linear output, mean squared error on the standardised target)."""
    import keras
    import keras_tuner as kt
    from keras import layers

    x_train = data["train"][0]

    def output(x):
        return layers.Dense(len(classes), activation="softmax")(x) if classes else layers.Dense(1)(x)

    def head(x, hp, low=32, high=256):
        x = layers.Dense(hp.Int("units", low, high, sampling="log"), activation="relu")(x)
        x = layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.1))(x)
        return output(x)

    def compiled(inputs, outputs, hp, low=1e-4, high=1e-2):
        model = keras.Model(inputs, outputs)
        model.compile(
            optimizer=keras.optimizers.Adam(hp.Float("learning_rate", low, high, sampling="log")),
            loss="sparse_categorical_crossentropy" if classes else "mean_squared_error",
            metrics=["accuracy"] if classes else [],
        )
        return model

    if kind == "image":  # a small CNN

        def build(hp):
            inputs = keras.Input(x_train.shape[1:])
            x = layers.Rescaling(1 / float(x_train.max()))(inputs)  # 1/255 for MNIST
            kernel, norm = hp.Choice("kernel_size", [3, 5]), hp.Boolean("batch_norm")
            for i in range(hp.Int("conv_blocks", 1, 3)):
                x = layers.Conv2D(
                    hp.Int(f"filters_{i}", 16, 96, sampling="log"), kernel, padding="same", use_bias=not norm
                )(x)
                x = layers.BatchNormalization()(x) if norm else x
                x = layers.MaxPooling2D()(layers.Activation("relu")(x))
            x = (
                layers.Flatten()(x)
                if hp.Choice("pooling", ["flatten", "avg"]) == "flatten"
                else layers.GlobalAveragePooling2D()(x)
            )
            return compiled(inputs, head(x, hp), hp)

        batch_sizes = [32, 64, 128]
    elif kind == "text":  # TextVectorization + Embedding, then Conv1D + max pooling or average pooling
        adapter = layers.TextVectorization()
        adapter.adapt(np.asarray(x_train, dtype=object), batch_size=1024)
        vocabulary = adapter.get_vocabulary()[2:]  # without '' and [UNK]; most frequent first

        def build(hp):
            inputs = keras.Input((), dtype="string")
            vectorize = layers.TextVectorization(
                vocabulary=vocabulary[: hp.Choice("max_tokens", [2000, 10000, 20000]) - 2],
                output_sequence_length=hp.Choice("sequence_length", [32, 64, 128]),
            )
            x = layers.Embedding(vectorize.vocabulary_size(), hp.Choice("embed_dim", [16, 32, 64]))(vectorize(inputs))
            if hp.Choice("encoder", ["conv", "pool"]) == "conv":
                with hp.conditional_scope("encoder", ["conv"]):
                    x = layers.Conv1D(
                        hp.Int("filters", 16, 128, sampling="log"),
                        hp.Choice("kernel_size", [3, 5, 7]),
                        activation="relu",
                    )(x)
                x = layers.GlobalMaxPooling1D()(x)
            else:
                x = layers.GlobalAveragePooling1D()(x)
            return compiled(inputs, head(x, hp, 16, 128), hp, 3e-4, 1e-2)

        batch_sizes = [16, 32, 64]
    elif kind == "sequence":  # normalisation, then a Conv1D stack or an LSTM
        mean, var = float(x_train.mean()), float(x_train.var())

        def build(hp):
            inputs = keras.Input(x_train.shape[1:])
            x = layers.Normalization(mean=mean, variance=var)(inputs)
            if hp.Choice("encoder", ["conv1d", "lstm"]) == "conv1d":
                with hp.conditional_scope("encoder", ["conv1d"]):
                    for _ in range(hp.Int("conv_layers", 1, 3)):
                        x = layers.Conv1D(
                            hp.Int("filters", 16, 64, sampling="log"),
                            hp.Choice("kernel_size", [3, 5, 7]),
                            padding="same",
                            activation="relu",
                        )(x)
                x = layers.GlobalAveragePooling1D()(x)
            else:
                with hp.conditional_scope("encoder", ["lstm"]):
                    x = layers.LSTM(hp.Int("lstm_units", 16, 64, sampling="log"))(x)
            return compiled(inputs, head(x, hp, 16, 128), hp, 3e-4, 1e-2)

        batch_sizes = [16, 32, 64]
    elif kind == "tabular":  # one-hot + standardised numbers (done once, below), then an MLP

        def build(hp):
            inputs = keras.Input(x_train.shape[1:])
            x = inputs
            for i in range(hp.Int("layers", 1, 4)):
                x = layers.Dense(hp.Int(f"units_{i}", 16, 512, sampling="log"), activation="relu")(x)
                x = layers.BatchNormalization()(x) if hp.Boolean("batch_norm") else x
                x = layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.1))(x)
            return compiled(inputs, output(x), hp, 1e-4, 3e-2)

        batch_sizes = [16, 32, 64, 128]
    else:
        raise ValueError(kind)

    class TaskHyperModel(kt.HyperModel):
        def build(self, hp):
            return build(hp)

        def fit(self, hp, model, *args, **kwargs):
            return model.fit(*args, batch_size=hp.Choice("batch_size", batch_sizes), **kwargs)

    return TaskHyperModel(name=name)


def table_matrix(splits: dict) -> dict:
    """A table for the KerasTuner models: one-hot text columns, numbers standardised with the
    training split's mean and std, missing numbers set to that mean (what a user writes with pandas
    before model.fit)."""
    import pandas as pd

    train = splits["train"][0]
    text = [c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
    numeric = [c for c in train.columns if c not in text]
    mean, std = train[numeric].mean(), train[numeric].std().replace(0, 1)
    columns = pd.get_dummies(train[text].astype(str)).columns if text else []

    def matrix(df):
        numbers = ((df[numeric] - mean) / std).fillna(0).to_numpy("float32")
        if not text:  # get_dummies of no columns fails
            return numbers
        hot = pd.get_dummies(df[text].astype(str)).reindex(columns=columns, fill_value=0)
        return np.concatenate([numbers, hot.to_numpy("float32")], axis=1)

    return {k: (matrix(x), y) for k, (x, y) in splits.items()}


def run_keras_tuner(
    task: str,
    method: str,
    splits: dict,
    budget: float,
    epochs: int,
    seed: int = 0,
    kind: str | None = None,
    regression: bool = False,
) -> dict:
    """One KerasTuner search on the hand-written hypermodel of the task's kind (`kind`, default
    KIND[task]); classifiers rank by val_accuracy, regressors (standardised target) by val_loss."""
    import keras
    import keras_tuner as kt

    keras.utils.set_random_seed(seed)
    kind = kind or KIND[task]
    if regression:  # a careful user standardises the target and scales predictions back
        y_mean, y_std = float(np.mean(splits["train"][1])), float(np.std(splits["train"][1]) or 1.0)
        data = {k: (x, ((np.asarray(y, dtype="float32") - y_mean) / y_std)) for k, (x, y) in splits.items()}
        classes = None
    else:
        data, classes = encode(splits)
    if kind == "tabular":
        data = table_matrix(data)
    elif kind == "text":
        data = {k: (np.asarray(x, dtype=object), y) for k, (x, y) in data.items()}
    else:  # images and sequences: a channel / feature axis
        data = {k: (np.asarray(x, dtype="float32")[..., None], y) for k, (x, y) in data.items()}
    (x, y), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]
    objective = "val_loss" if regression else "val_accuracy"
    tuner_class = {"kt-random": kt.RandomSearch, "kt-bayesian": kt.BayesianOptimization, "kt-hyperband": kt.Hyperband}[
        method
    ]
    deadline = [float("inf")]
    started = time.perf_counter()
    curve: list[tuple[float, float]] = []

    class Timed(tuner_class):
        """The budget rule of our Search timeout: no trial starts after the deadline, and the trial
        in flight stops at the end of the epoch in which it passes (its best epoch so far counts)."""

        def pre_create_trial(self):
            super().pre_create_trial()
            if time.time() >= deadline[0]:
                self.oracle.max_trials = max(1, len(self.oracle.trials))  # create_trial now says STOPPED

        def on_epoch_end(self, trial, model, epoch, logs=None):
            super().on_epoch_end(trial, model, epoch, logs=logs)
            if time.time() >= deadline[0]:
                model.stop_training = True

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if trial.score is not None:  # the best validation score so far, for time-to-score figures
                better = min if regression else max
                best = trial.score if not curve else better(curve[-1][1], trial.score)
                curve.append((round(time.perf_counter() - started, 2), float(best)))
            print(
                f"  [{task} {method}] trial {trial.trial_id} {trial.status} score={trial.score} "
                f"t={time.perf_counter() - started:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    options = (
        {"max_epochs": epochs, "hyperband_iterations": 1000} if method == "kt-hyperband" else {"max_trials": 100_000}
    )
    with tempfile.TemporaryDirectory(prefix="kt-quality-") as tmp:
        tuner = Timed(
            hypermodel(kind, data, classes, name=task),
            objective=objective,
            seed=seed,
            directory=tmp,
            project_name=task,
            overwrite=True,
            **options,
        )
        deadline[0] = time.time() + budget
        tuner.search(
            x,
            y,
            validation_data=(x_val, y_val),
            epochs=epochs,
            verbose=0,
            callbacks=[keras.callbacks.EarlyStopping(objective, patience=3, restore_best_weights=True)],
        )
        seconds = time.perf_counter() - started
        done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
        failed = [t for t in tuner.oracle.trials.values() if t.status in ("FAILED", "INVALID")]
        best_trial = tuner.oracle.get_best_trials(1)[0]
        model = tuner.get_best_models(1)[0]
        out = {
            "seconds": seconds,
            "trials": len(done),
            "pruned": 0,
            "failed": len(failed),
            "best_params": best_trial.hyperparameters.values,
            "curve": curve,
        }
        if regression:
            predict = lambda xs: model.predict(xs, verbose=0)[:, 0] * y_std + y_mean  # noqa: E731
            out["val_loss"] = float(best_trial.score)
            out["val"] = regression_scores(splits["val"][1], predict(x_val))
            out["test"] = regression_scores(splits["test"][1], predict(x_test))
        else:
            predict = lambda xs: model.predict(xs, verbose=0).argmax(axis=1)  # noqa: E731
            out["val_acc"] = float(best_trial.score)
            out["val"] = scores(y_val, predict(x_val))
            out["test"] = scores(y_test, predict(x_test))
    return out


def run_one(task: str, method: str, budget: float, epochs: int, seed: int = 0) -> dict:
    import warnings

    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")  # KerasTuner reload
    check_data([task])
    splits = load_task(task)
    if method == "automl":
        out = run_automl(task, splits, budget, epochs, seed)
    elif method in METHODS:
        out = run_keras_tuner(task, method, splits, budget, epochs, seed)
    else:
        raise SystemExit(f"error: unknown method {method!r} (methods: {', '.join(METHODS)})")
    return {
        "task": task,
        "method": method,
        "budget": budget,
        "epochs": epochs,
        "seed": seed,
        "code": code_version(),
        **out,
    }


# ---------------------------------------------------------------- the parent: one child per (task, method)


def run_child(task: str, method: str, budget: float, epochs: int, seed: int = 0) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        task,
        method,
        "--budget",
        f"{budget:g}",
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
    ]
    print(
        f"[{time.strftime('%H:%M:%S')}] {task} / {method} / seed {seed}: {budget:g} s ...", file=sys.stderr, flush=True
    )
    started = time.perf_counter()
    try:  # the child's own progress lines go to our stderr; its result is one marked stdout line
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=budget * 3 + 600)
    except subprocess.TimeoutExpired:
        return {"task": task, "method": method, "seed": seed, "error": f"child killed after {budget * 3 + 600:g} s"}
    lines = [line[len(MARK) :] for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        return {
            "task": task,
            "method": method,
            "seed": seed,
            "error": f"child exited {proc.returncode} without a result",
        }
    result = json.loads(lines[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def _mean(values) -> float:
    return float(np.mean(values))


def _figure(values, digits: int = 4) -> str:
    """One seed: the value; several: mean ± standard deviation."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def report(results: list[dict], tasks, methods) -> tuple[str, list[str]]:
    """The markdown table (one row per task and method; mean ± sd over seeds when there are
    several) and one verdict line per task, on mean test accuracy."""
    rows = [
        "| task (input; test classes) | method | seeds | trials (pruned) | seconds | best val acc | test acc "
        "| test bal. acc | test F1 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for task in tasks:
        label = f"{task} ({KIND[task]}; {CLASS_NOTE[task]})"
        ok = {}
        for method in methods:
            mine = [r for r in results if r["task"] == task and r["method"] == method]
            errors = [r for r in mine if "error" in r]
            good = sorted((r for r in mine if "error" not in r), key=lambda r: r.get("seed", 0))
            if errors:
                rows.append(
                    f"| {label} | {method} | {len(mine)} | - | - | - | - | - | "
                    f"{len(errors)} failed: {errors[0]['error']} |"
                )
            if not good:
                continue
            ok[method] = good
            failed = sum(r.get("failed", 0) for r in good)
            failed = f", {failed} failed" if failed else ""
            seeds = ",".join(str(r.get("seed", 0)) for r in good)
            trials = _mean([r["trials"] for r in good])
            pruned = _mean([r["pruned"] for r in good])
            count = f"{trials:.0f} ({pruned:.0f})" if len(good) == 1 else f"{trials:.1f} ({pruned:.1f})"
            rows.append(
                f"| {label} | {method} | {seeds} | {count}{failed} | {_mean([r['seconds'] for r in good]):.0f} "
                f"| {_figure([r['val_acc'] for r in good])} | {_figure([r['test']['acc'] for r in good])} "
                f"| {_figure([r['test']['bal_acc'] for r in good])} | {_figure([r['test']['f1'] for r in good])} |"
            )
        ours = ok.get("automl")
        kts = {m: rs for m, rs in ok.items() if m != "automl"}
        if ours is None or not kts:
            verdicts.append(f"- {task}: no comparison (a run failed or was not selected)")
            continue
        test = {m: _mean([r["test"]["acc"] for r in rs]) for m, rs in ok.items()}
        val = {m: _mean([r["val_acc"] for r in rs]) for m, rs in ok.items()}
        best = max(kts, key=lambda m: (test[m], val[m]))
        a, b = test["automl"], test[best]
        ratio = (1 - a) / (1 - b) if b < 1 else float("inf")
        word = "WINS" if a > b else ("TIES" if a == b else "LOSES")
        theirs = {r.get("seed", 0): r["test"]["acc"] for r in kts[best]}
        paired = [(r["test"]["acc"], theirs[r.get("seed", 0)]) for r in ours if r.get("seed", 0) in theirs]
        per_seed = (
            f"; per seed vs {best}: {sum(x > y for x, y in paired)} ahead, {sum(x == y for x, y in paired)} "
            f"tied, {sum(x < y for x, y in paired)} behind"
            if len(paired) > 1
            else ""
        )
        mean = "mean " if len(ours) > 1 else ""
        verdicts.append(
            f"- {task}: automl {word} on {mean}test accuracy, {a:.4f} vs {b:.4f} for the best KerasTuner "
            f"method ({best}), {100 * (a - b):+.2f} points, test error ratio automl/best-KT "
            f"{ratio:.2f}; {mean}best val {val['automl']:.4f} vs {max(val[m] for m in kts):.4f}; "
            f"{mean}test balanced acc {_mean([r['test']['bal_acc'] for r in ours]):.4f} vs "
            f"{max(_mean([r['test']['bal_acc'] for r in rs]) for rs in kts.values()):.4f}{per_seed}"
        )
    return "\n".join(rows), verdicts


CLASS_NOTE = {
    "mnist_test": "10 balanced classes",
    "sms_spam": "13% spam",
    "ucr_ECG200": "64% class 1",
    "bank_marketing": "11.5% yes",
}


def code_version() -> str:
    """The commit the product was measured at, and whether automl/ or the spaces had uncommitted edits."""
    rev = git("rev-parse", "--short", "HEAD") or "unknown (no git)"
    dirty = git("status", "--porcelain", "--", "automl", "search_spaces")
    return f"automl at {rev}" + (" with uncommitted changes in automl/ or search_spaces/" if dirty else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=90.0, help="seconds per task and method (default 90)")
    ap.add_argument(
        "--epochs",
        type=int,
        default=10,
        help="most epochs per trial, both sides (default 10, the task classes' default)",
    )
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    ap.add_argument("--json", metavar="FILE", help="also write every child's raw result (with best parameters) here")
    ap.add_argument(
        "--seeds",
        default="0",
        help="comma-separated search seeds (default 0); every method runs "
        "once per seed on the same fixed splits; the table shows mean ± sd",
    )
    ap.add_argument(
        "--include",
        metavar="FILE",
        action="append",
        default=[],
        help="results of an earlier run (its --json) to report with this run's, e.g. seed 0 done "
        "before --seeds 1,2; same budget and epochs required. Rows for a task, method and seed "
        "this run repeats are dropped; of two files, the later one's row counts. With "
        "--seeds '' nothing runs: the included results are reported",
    )
    ap.add_argument(
        "--one",
        nargs=2,
        metavar=("TASK", "METHOD"),
        help="(child) run one method on one task, print its result as JSON",
    )
    ap.add_argument("--seed", type=int, default=0, help="(child) the search seed")
    args = ap.parse_args(argv)
    if args.budget <= 0 or args.epochs < 1:
        ap.error("--budget must be positive and --epochs at least 1")
    if args.one:
        task, method = args.one
        if task not in TASKS or method not in METHODS:
            ap.error(f"--one TASK METHOD: tasks {', '.join(TASKS)}; methods {', '.join(METHODS)}")
        result = run_one(task, method, args.budget, args.epochs, args.seed)
        print(MARK + json.dumps(result, default=str), flush=True)
        return 0
    print_header()
    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    bad = [t for t in tasks if t not in TASKS] + [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown task or method {bad[0]!r} (tasks: {', '.join(TASKS)}; methods: {', '.join(METHODS)})")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--seeds takes comma-separated integers, not {args.seeds!r}")
    earlier = []
    for path in args.include:
        try:
            rows = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            ap.error(f"--include {path}: {exc}")
        rows = [r for r in rows if r.get("task") in tasks and r.get("method") in methods]
        other = [
            r for r in rows if (r.get("budget"), r.get("epochs")) != (args.budget, args.epochs) and "error" not in r
        ]
        if other:
            ap.error(
                f"--include {path}: its runs used budget {other[0].get('budget')} / epochs {other[0].get('epochs')}, "
                f"not {args.budget:g} / {args.epochs}"
            )
        earlier += rows
    check_data(tasks)
    run_now = {(t, m, seed) for t in tasks for m in methods for seed in seeds}
    kept = {}  # a later file's row for the same task, method and seed replaces an earlier file's
    for r in earlier:
        kept[(r.get("task"), r.get("method"), r.get("seed", 0))] = r
    earlier = [r for key, r in kept.items() if key not in run_now]

    command = shlex.join([".venv/bin/python", "bench/quality.py", *(argv if argv is not None else sys.argv[1:])])
    started, load_before = time.time(), os.getloadavg()
    results = []
    for task in tasks:  # methods interleaved per task and seed, so drift in machine load hits all alike
        for seed in seeds:
            for method in methods:
                r = run_child(task, method, args.budget, args.epochs, seed)
                results.append(r)
                if "error" in r:
                    print(f"  -> {r['error']}", file=sys.stderr, flush=True)
                else:
                    print(
                        f"  -> {r['trials']} trials in {r['seconds']:.0f} s, best val {r['val_acc']:.4f}, "
                        f"test {r['test']['acc']:.4f}; best: {json.dumps(r['best_params'], default=str)}",
                        file=sys.stderr,
                        flush=True,
                    )
    elapsed, load_after = time.time() - started, os.getloadavg()
    table, verdicts = report(earlier + results, tasks, methods)
    import keras
    import keras_tuner
    import optuna

    machine = (
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), {platform.system()}, "
        f"Python {platform.python_version()}, Keras {keras.__version__}, KerasTuner {keras_tuner.__version__}, "
        f"Optuna {optuna.__version__}; load average {load_before[0]:.1f} at start, {load_after[0]:.1f} at end"
    )
    body = "\n".join(
        [
            "## Quality",
            "",
            f"Our default search vs KerasTuner's tuners at an equal wall-clock budget of {args.budget:g} s per task "
            f"and method (one process each), at most {args.epochs} epochs per trial on both sides. "
            "`automl` = the task class (ImageClassifier / TextClassifier / SequenceClassifier / "
            "TabularClassifier) with its shipped space and defaults: objective val_loss, TPE, median pruning, "
            "early stopping (patience 3) and `timeout`; `kt-*` = keras_tuner RandomSearch / "
            "BayesianOptimization / Hyperband (default settings) "
            "on a hand-written hypermodel per input kind (see `hypermodel()` in bench/quality.py) with "
            "EarlyStopping(patience=3). Fixed seeded splits of ../shared/data: mnist_test 4000/1000/2000 "
            "(stratified subsample of the 10k test digits), sms_spam and bank_marketing stratified 60/20/20, "
            "ucr_ECG200 its TRAIN file 80/20 + its TEST file (100). Best val = the validation accuracy of the "
            "search's best model (KerasTuner ranks by it; automl by its objective); test = that model on the "
            "test split. F1: of the rare class (spam, yes, class -1), "
            "macro for MNIST. `seconds` = the whole search call, setup and teardown included. `seeds` = the "
            "searches' own seeds (KerasTuner's `seed` and Keras' initialisation; ours: `seed`), the splits "
            "stay fixed; with several seeds a figure is mean ± standard deviation over them.",
            "",
            f"Command: `{command}`  ",
            f"Date: {datetime.datetime.fromtimestamp(started).strftime('%Y-%m-%d %H:%M')}, "
            + (f"{elapsed / 60:.0f} min in all  " if results else "report of the included runs only  "),
            (f"Code: {code_version()} (this run)" if results else "Code: (nothing run; results from --include)")
            + (
                f"; included: {', '.join(args.include)} with "
                f"{', '.join(sorted({r.get('code', 'code not recorded') for r in earlier}))}"
                if earlier
                else ""
            )
            + "  ",
            f"Machine: {machine}",
            "",
            table,
            "",
            "Per task (winner on (mean) test accuracy; the best KerasTuner method is picked by its test score, "
            "the stricter comparison):",
            "",
            *verdicts,
            "",
        ]
    )
    print()
    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if not args.no_write:  # the shared helper re-reads the file and replaces only our section
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results_md import RESULTS, write_section

        write_section("Quality", body.split("\n", 1)[1])
        print(f"(written to {RESULTS.relative_to(ROOT)}, section ## Quality)", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MissingData as exc:
        sys.exit(exc.code)
