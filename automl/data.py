"""Inputs of every kind, checked up front and turned into a `Dataset`.

Kinds and what they come from:
- image: (n, h, w[, c]) arrays, or a folder with one sub-folder of images per class.
- tabular: (n, features) numeric arrays, pandas DataFrames and CSV files. A table with text
  (categorical) columns or missing values keeps its columns: the model takes one raw input per
  column and learns the preprocessing (see `blocks/tabular.py`).
- text: a list/array of strings, a folder with one sub-folder of `.txt` files per class, or one
  `.txt` file per class (a sample per line). The vocabulary is learnt inside the model.
- sequence: padded (n, steps[, features]) arrays (`kind="sequence"`) or a list of variable-length
  arrays, padded here with all-zero steps that the model masks.
- a `tf.data.Dataset` of (x, y) elements or batches of any of the above: it is read into memory,
  which suits the small data sets a search trains hundreds of models on.

Lengths, shapes, dtypes, NaNs, labels and empty inputs are checked before any trial runs; each
error names the input, the column, sample or file, and the shape at fault.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .images import image_files, read_image_files
from .names import input_names
from .readers import (
    BUILTIN,
    KINDS,
    check_task_labels,
    infer_task,
    load_builtin,
    load_folder,
    load_npz,
    pad_to,
    read_input,
    read_labels,
    read_samples_file,
    read_unlabeled,
    sentences,
)
from .tables import MISSING, date_parts, load_table, read_table

load_csv = load_table  # its name before Parquet files were read too

__all__ = [
    "BUILTIN",
    "KINDS",
    "TASKS",
    "Column",
    "DataError",
    "Dataset",
    "attach_unlabeled",
    "encode_targets",
    "load_builtin",
    "load_csv",
    "load_data",
    "load_folder",
    "load_npz",
    "load_table",
    "make_dataset",
    "model_inputs",
    "validation_size",
]

TASKS = ("classification", "regression")


@dataclass
class Column:
    """One table column and what the model learns about it from the training split."""

    name: str
    kind: str  # numeric | categorical | text (sentences: a bag of word n-grams, blocks/tabular.py)
    mean: float = 0.0  # numeric: over the non-missing training values
    std: float = 1.0
    missing: bool = False  # numeric: missing training values -> an indicator feature
    vocabulary: list[str] = field(default_factory=list)  # categorical: most frequent first


@dataclass
class Dataset:
    x_train: Any  # ndarray; text: object array of str; table columns: {input name: (n,) array}
    y_train: np.ndarray
    x_val: Any
    y_val: np.ndarray
    task: str
    kind: str
    name: str = "arrays"
    class_names: list | None = None
    # facts learnt from the training split, baked into the model so it takes raw inputs
    pixel_scale: float | None = None
    feature_mean: np.ndarray | None = None  # numeric tabular arrays and sequences (per feature)
    feature_var: np.ndarray | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    columns: list[Column] | None = None  # tables with categorical columns or missing values
    masked: bool = False  # sequences: all-zero steps are padding
    extra: dict[str, Any] = field(default_factory=dict)  # caches (e.g. the text vocabulary)
    x_unlabeled: Any = None  # samples without labels for self-supervised pretraining (pretraining.py)

    @property
    def input_shape(self) -> tuple:
        if self.columns is not None:
            return (len(self.columns),)
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        if self.task != "classification":
            return None
        if self.class_names is None:
            raise DataError(f"{self.name}: a classification Dataset needs its class_names")
        return len(self.class_names)

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    @property
    def num_val(self) -> int:
        return len(self.y_val)

    def schema(self) -> dict[str, Any]:
        """What reading new samples for its models needs, in JSON types; recorded on a study so that
        `automl predict` needs the study alone (`from_schema`)."""
        names = self.extra.get("feature_names")
        return {
            "kind": self.kind,
            "task": self.task,
            "class_names": None if self.class_names is None else [_plain(c) for c in self.class_names],
            "input_shape": [int(d) for d in self.input_shape],
            "columns": None if self.columns is None else [[c.name, c.kind] for c in self.columns],
            "feature_names": None if not names else [str(n) for n in names],
            "masked": bool(self.masked),
        }

    @classmethod
    def from_schema(cls, schema: dict[str, Any], name: str = "new samples") -> Dataset:
        """A Dataset without samples that `model_inputs` reads new samples for (`schema()`'s inverse)."""
        empty = np.zeros((0, *schema["input_shape"]), dtype="float32")
        ds = cls(empty, np.zeros(0), empty, np.zeros(0), schema["task"], schema["kind"], name, schema["class_names"])
        if schema["columns"] is not None:
            ds.columns = [Column(n, kind) for n, kind in schema["columns"]]
        if schema["feature_names"]:
            ds.extra["feature_names"] = schema["feature_names"]
        ds.masked = schema["masked"]
        return ds

    def describe(self) -> dict[str, Any]:
        d = {
            "data": self.name,
            "data_kind": self.kind,
            "task": self.task,
            "train_samples": self.num_train,
            "val_samples": self.num_val,
            "input_shape": str(self.input_shape),
        }
        if self.task == "classification":
            d["num_classes"] = self.num_classes
        if self.columns is not None:
            d["columns"] = self._columns_summary(self.columns)
        return d

    def summary(self) -> str:
        what = f"{self.num_classes} classes" if self.task == "classification" else "regression"
        shape = f"{self._columns_summary(self.columns)}" if self.columns is not None else f"{self.input_shape}"
        return f"{self.name}: {self.num_train} train / {self.num_val} val, {self.kind} input {shape}, {what}"

    @staticmethod
    def _columns_summary(columns: list[Column]) -> str:
        numeric = sum(c.kind == "numeric" for c in columns)
        texts = sum(c.kind == "text" for c in columns)
        missing = sum(c.missing or MISSING in c.vocabulary for c in columns)
        kinds = f"{numeric} numeric + {len(columns) - numeric - texts} categorical" + (
            f" + {texts} text" if texts else ""
        )
        return f"{kinds} columns, {missing} with missing values"

    def fingerprint(self) -> str:
        """Hash of the data, stored with a study so resuming on other data is caught."""
        h = hashlib.sha256()
        arrays = [self.x_train, self.y_train, self.x_val, self.y_val]
        if self.x_unlabeled is not None:  # only then: the fingerprints of labelled-only data stay as they were
            arrays.append(self.x_unlabeled)
        for a in arrays:
            for key, arr in sorted(a.items()) if isinstance(a, dict) else [("", a)]:
                h.update(f"{key}{arr.shape}".encode())
                if arr.dtype == object:  # strings: hash the text, not the object pointers
                    h.update("\x1f".join(map(str, arr.ravel())).encode())
                else:
                    h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]


def load_data(spec: str, target: str | None = None, **kwargs) -> Dataset:
    """What the CLI's `--data` names: a built-in set, a CSV or Parquet file (+ target), an `.npz` file
    or a folder.
    `kind` (a space's input) reads a CSV's one column as texts, or 2-D arrays as sequences."""
    if spec in BUILTIN:
        x, y, kind = load_builtin(spec)
        return make_dataset(x, y, name=spec, **{**kwargs, "kind": kind})
    path = Path(spec)
    if path.is_dir():
        return make_dataset(path, None, name=path.name, **kwargs)
    if not path.is_file():
        raise DataError(f"{spec}: not a built-in data set ({', '.join(BUILTIN)}) and no such file or folder")
    if path.suffix == ".npz":
        a = load_npz(path)
        val = (a["x_val"], a["y_val"]) if "x_val" in a and "y_val" in a else None
        return make_dataset(a["x"], a["y"], validation_data=val, name=path.name, **kwargs)
    return make_dataset(path, target, name=f"{path.name}:{target}", **kwargs)


def _columns(x_train, x_val) -> list[Column] | None:
    """Column facts from the training split; None when a plain numeric matrix does (no text, no gaps)."""
    numeric = [c for c in x_train.columns if _numeric(x_train[c])]
    if len(numeric) == x_train.shape[1] and not (x_train.isna().any().any() or x_val.isna().any().any()):
        return None
    cols = []
    for name in x_train.columns:
        s = x_train[name]
        if name in numeric:
            values = s.to_numpy()
            present = values[~np.isnan(values)]
            if len(present) == 0:
                raise DataError(f"training data: column {name!r} has no values in the training split")
            cols.append(
                Column(
                    name,
                    "numeric",
                    float(present.mean()),
                    float(present.std() or 1.0),
                    missing=bool(len(present) < len(values)),
                )
            )
        elif sentences(s, varied=True):  # a bag of its words, not a category per row
            cols.append(Column(name, "text"))
        else:
            counts = s.value_counts()
            order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            cols.append(Column(name, "categorical", vocabulary=[str(k) for k, _ in order]))
    return cols


def _numeric(s) -> bool:
    """After `read_table` a column is float32 (numeric) or strings (categorical)."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(s.dtype)


def _as_columns(df, columns: list[Column]) -> dict[str, np.ndarray]:
    """A table's columns as the model takes them: keyed by its input names (`names.input_names`)."""
    names = input_names([c.name for c in columns])
    return {names[c.name]: df[c.name].to_numpy(dtype="float32" if c.kind == "numeric" else object) for c in columns}


def make_dataset(
    x,
    y=None,
    *,
    validation_data=None,
    validation_split: float = 0.2,
    task: str | None = None,
    kind: str | None = None,
    name: str = "arrays",
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
) -> Dataset:
    """Check inputs, infer task and kind, split off validation data, learn the facts the model bakes in.

    `x` is any input described in the module docstring (a CSV path takes `y` as its target column
    name; a folder takes no `y`). `kind` forces a kind (`"sequence"` for padded 2-D/3-D arrays).
    """
    if kind is not None and kind not in KINDS:
        raise DataError(f"kind must be one of {KINDS}, not {kind!r}")
    if task is not None and task not in TASKS:
        raise DataError(f"task must be one of {TASKS}, not {task!r}")
    x, y, kind = read_input(x, y, kind, "training data", image_size)
    if len(x) != len(y):
        raise DataError(f"training data: x has {len(x)} samples but y has {len(y)}")
    task = task or infer_task(y)
    check_task_labels(y, task, "training data")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise DataError("validation_data must be a pair (x_val, y_val)")
        x_val, y_val = validation_data
        x_val, y_val, _ = read_input(x_val, y_val, kind, "validation data", image_size)
        if len(x_val) != len(y_val):
            raise DataError(f"validation data: x has {len(x_val)} samples but y has {len(y_val)}")
        check_task_labels(y_val, task, "validation data")
        x_train, y_train = x, y
        x_train, x_val = _match(x_train, x_val, kind)
    else:
        n_val = validation_size(len(x), validation_split)
        from sklearn.model_selection import train_test_split

        stratify = y if task == "classification" and _can_stratify(y, n_val) else None
        x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=n_val, random_state=seed, stratify=stratify)
    ds = Dataset(x_train, y_train, x_val, y_val, task=task, kind=kind, name=name)
    if task == "classification":
        _encode_labels(ds)
    else:
        ds.y_train, ds.y_val = ds.y_train.astype("float32"), ds.y_val.astype("float32")
        ds.target_mean, ds.target_std = float(ds.y_train.mean()), float(ds.y_train.std() or 1.0)
    _learn_input_facts(ds)
    return ds


PRETRAINABLE = ("image", "sequence")  # the kinds whose spaces can pretrain on unlabeled samples


def attach_unlabeled(ds: Dataset, x) -> None:
    """Check unlabeled samples against the training inputs and keep them on `ds` (`x_unlabeled`): same
    kind and per-sample shape (images from a folder are resized to the training size; shorter series
    are padded), so every error is raised here, before any training."""
    what = "unlabeled data"
    if ds.kind not in PRETRAINABLE:
        raise DataError(
            f"{what}: pretraining on unlabeled samples exists for {' and '.join(PRETRAINABLE)} inputs; "
            f"the training data is {ds.kind}"
        )
    size = tuple(ds.x_train.shape[1:3]) if ds.kind == "image" else None
    try:
        x = read_unlabeled(x, ds.kind, what, size)
    except DataError as exc:
        message = str(exc)
        raise DataError(message if message.startswith(what) else f"{what}: {message}") from None
    train = ds.x_train.shape[1:]
    if ds.kind == "sequence" and x.shape[2:] == train[1:] and x.shape[1] < train[0]:
        x = pad_to(x, train[0])
    if x.shape[1:] != train:
        raise DataError(f"{what}: x has shape {x.shape[1:]} per sample, the training x has {train}")
    ds.x_unlabeled = x


def validation_size(n: int, validation_split: float) -> int:
    """How many of `n` samples a split holds out; both parts must keep at least one."""
    if not 0 < validation_split < 1:
        raise DataError(f"validation_split must be between 0 and 1, not {validation_split}")
    n_val = round(n * validation_split)
    if n_val < 1 or n - n_val < 1:
        raise DataError(f"{n} samples are too few to split off {validation_split:.0%} for validation")
    return n_val


def _match(x_train, x_val, kind: str):
    """Validation inputs must fit the model built from the training inputs."""
    if kind == "tabular" and hasattr(x_train, "columns") != hasattr(x_val, "columns"):
        raise DataError("validation data: x must be a table like the training x (both DataFrames or both arrays)")
    if hasattr(x_train, "columns"):
        missing = [c for c in x_train.columns if c not in x_val.columns]
        if missing:
            raise DataError(
                f"validation data: no column {missing[0]!r} (training columns: {', '.join(x_train.columns)})"
            )
        x_val = x_val[list(x_train.columns)]
        for c in x_train.columns:
            if _numeric(x_train[c]) != _numeric(x_val[c]):
                kinds = ["numeric" if _numeric(s) else "categorical" for s in (x_train[c], x_val[c])]
                raise DataError(f"validation data: column {c!r} is {kinds[1]} but {kinds[0]} in the training data")
        return x_train, x_val
    if kind == "text":
        return x_train, x_val
    if kind == "sequence" and x_train.shape[2:] == x_val.shape[2:] and x_train.shape[1] != x_val.shape[1]:
        steps = max(x_train.shape[1], x_val.shape[1])
        return pad_to(x_train, steps), pad_to(x_val, steps)
    if x_val.shape[1:] != x_train.shape[1:]:
        raise DataError(
            f"validation data: x has shape {x_val.shape[1:]} per sample, training x has {x_train.shape[1:]}"
        )
    return x_train, x_val


def _learn_input_facts(ds: Dataset) -> None:
    if ds.kind == "image":
        peak = float(np.max(ds.x_train))
        ds.pixel_scale = 1.0 / peak if peak > 1.0 else None
    elif ds.kind == "tabular" and hasattr(ds.x_train, "columns"):
        ds.columns = _columns(ds.x_train, ds.x_val)
        if ds.columns is None:  # all numeric, nothing missing: a plain matrix
            ds.extra["feature_names"] = list(ds.x_train.columns)
            ds.x_train, ds.x_val = ds.x_train.to_numpy("float32"), ds.x_val.to_numpy("float32")
        else:
            ds.x_train, ds.x_val = _as_columns(ds.x_train, ds.columns), _as_columns(ds.x_val, ds.columns)
    if ds.kind == "tabular" and ds.columns is None:
        ds.feature_mean, ds.feature_var = ds.x_train.mean(axis=0), ds.x_train.var(axis=0)
    elif ds.kind == "sequence":
        steps = ds.x_train.reshape(-1, ds.x_train.shape[-1])
        real = np.any(steps != 0, axis=1)
        ds.masked = bool((~real).any() or (ds.x_val.reshape(-1, ds.x_val.shape[-1]) == 0).all(axis=1).any())
        steps = steps[real] if real.any() else steps
        ds.feature_mean, ds.feature_var = steps.mean(axis=0), steps.var(axis=0)


def _can_stratify(y: np.ndarray, n_val: int) -> bool:
    _, counts = np.unique(y, return_counts=True)
    return counts.min() >= 2 and n_val >= len(counts)


def _encode_labels(ds: Dataset) -> None:
    """Map labels (ints, strings, bools) to 0..K-1; validation labels must be known classes."""
    try:
        classes = np.unique(ds.y_train)
    except TypeError:  # mixed types (1 and "1")
        raise DataError(
            f"training data: labels mix types ({sorted({type(v).__name__ for v in ds.y_train})}); "
            f"use all numbers or all strings"
        ) from None
    if len(classes) < 2:
        raise DataError(f"classification needs at least 2 classes; training labels hold only {classes.tolist()}")
    unknown = np.setdiff1d(np.unique(ds.y_val), classes)
    if len(unknown):
        raise DataError(
            f"validation labels {unknown[:5].tolist()} do not occur in the training labels"
            + (
                " (numbers to predict rather than classes? task='regression', --task regression)"
                if np.issubdtype(ds.y_train.dtype, np.number)
                else ""
            )
        )
    ds.class_names = classes.tolist()
    ds.y_train = np.searchsorted(classes, ds.y_train).astype("int32")
    ds.y_val = np.searchsorted(classes, ds.y_val).astype("int32")


def model_inputs(ds: Dataset, x):
    """New samples in the form the model built for `ds` takes (same checks as for training). An image
    model also takes image files: a folder (sub-folders included, in sorted path order), one file or a
    list of files, each resized to the model's height and width and given its channels."""
    import pandas as pd

    what = "x"
    if isinstance(x, (str, Path)) and (ds.kind != "image" or Path(x).suffix.lower() == ".npz"):
        x = read_samples_file(Path(x), ds.kind)  # a file of new rows, texts or arrays
    files = image_files(x) if ds.kind == "image" else None
    if files is not None:
        return read_image_files(files, what, ds.input_shape)
    if isinstance(x, dict) and ds.kind == "tabular":
        x = pd.DataFrame(x)
    if isinstance(x, pd.DataFrame) and ds.kind == "tabular":
        x = date_parts(x)  # the columns the model takes, as training read them
    names = [c.name for c in ds.columns] if ds.columns is not None else ds.extra.get("feature_names")
    if isinstance(x, pd.DataFrame) and names:
        x = x.rename(columns=str)
        missing = [n for n in names if n not in x.columns]
        if missing:
            raise DataError(f"{what}: no column {missing[0]!r} (the model takes {', '.join(names)})")
        x = x[names]  # the training order; other columns (e.g. the target) are ignored
    if ds.columns is not None:
        if not isinstance(x, pd.DataFrame):
            taken = ", ".join(c.name for c in ds.columns)
            raise DataError(f"{what}: the model takes table columns ({taken}); pass a DataFrame or a dict of columns")
        df = read_table(x, what, predicting=True)
        for c in ds.columns:
            if c.kind != "numeric" and _numeric(df[c.name]):
                df[c.name] = np.array([MISSING if v != v else _category(v) for v in df[c.name]], dtype=object)
            elif c.kind == "numeric" and not _numeric(df[c.name]):
                raise DataError(f"{what}: column {c.name!r} is numeric in the training data but holds text here")
        return _as_columns(df, ds.columns)
    if isinstance(x, pd.DataFrame) and ds.kind not in ("text", "sequence"):  # those read a table's rows themselves
        x = x.to_numpy()
    xs, _, _ = read_input(x, np.zeros(len(x)), ds.kind, what, predicting=True)
    if ds.kind == "text":
        return xs
    steps = ds.input_shape[0]
    if ds.kind == "sequence" and xs.shape[2:] == ds.input_shape[1:] and xs.shape[1] != steps:
        if xs.shape[1] > steps:
            raise DataError(
                f"{what}: sequences have {xs.shape[1]} steps; the model takes at most {steps} (its training "
                "length; to predict longer ones, pad the training sequences with all-zero steps to that length)"
            )
        xs = pad_to(xs, steps)
    if xs.shape[1:] != ds.input_shape:
        raise DataError(f"{what}: samples have shape {xs.shape[1:]}; the model takes {ds.input_shape}")
    return xs


def labelled_folder(ds: Dataset, x) -> tuple[Any, np.ndarray]:
    """A folder with one sub-folder (or `.txt` file) per class, read as `fit` reads one: its samples in
    the form the model built for `ds` takes (images resized to its input) and their labels."""
    if not isinstance(x, (str, Path)) or not Path(x).is_dir():
        raise DataError("y: labels are required, unless x is a folder with one sub-folder per class")
    size, channels = (tuple(ds.input_shape[:2]), ds.input_shape[2]) if ds.kind == "image" else (None, None)
    xs, y, _ = load_folder(x, size, channels)
    return xs, y


def _plain(v):
    """A label as JSON holds it: numpy scalars as Python numbers or booleans."""
    return v.item() if isinstance(v, np.generic) else v


def _category(v) -> str:
    """A number in a categorical column as its text ("3", not "3.0", for whole numbers)."""
    return str(int(v)) if float(v).is_integer() else str(v)


def encode_targets(ds: Dataset, y) -> np.ndarray:
    """Labels in the user's values -> what the model was trained on (class indices or float targets)."""
    y = read_labels(y, "y")
    if ds.task == "regression":
        check_task_labels(y, "regression", "y")
        return y.astype("float32")
    classes = np.asarray(ds.class_names)
    unknown = [v for v in np.unique(y).tolist() if v not in set(classes.tolist())]
    if unknown:
        raise DataError(f"y: labels {unknown[:5]} are not among the trained classes {ds.class_names}")
    return np.searchsorted(classes, y).astype("int32")
