"""Inputs: numpy arrays, CSV files, `.npz` files and scikit-learn's bundled demo sets.

Everything is checked up front (lengths, dtypes, NaNs, labels) and turned into a `Dataset`:
train/validation arrays plus the facts the builder needs (input shape, classes, scaling).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUILTIN = ("digits", "breast_cancer", "wine", "diabetes")
KINDS = ("image", "tabular")
TASKS = ("classification", "regression")


class DataError(ValueError):
    """Input that cannot be searched on; the message names the input and what is wrong."""


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    task: str
    kind: str
    name: str = "arrays"
    class_names: list | None = None
    # facts learnt from the training split, baked into the model so it takes raw inputs
    pixel_scale: float | None = None
    feature_mean: np.ndarray | None = None
    feature_var: np.ndarray | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.task == "classification" else None

    def describe(self) -> dict[str, Any]:
        d = {"data": self.name, "data_kind": self.kind, "task": self.task, "train_samples": len(self.x_train),
             "val_samples": len(self.x_val), "input_shape": str(self.input_shape)}
        if self.task == "classification":
            d["num_classes"] = self.num_classes
        return d

    def summary(self) -> str:
        what = f"{self.num_classes} classes" if self.task == "classification" else "regression"
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} val, "
                f"{self.kind} input {self.input_shape}, {what}")

    def fingerprint(self) -> str:
        """Hash of the data, stored with a study so resuming on other data is caught."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_val, self.y_val):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


# ---------------------------------------------------------------- sources


def load_builtin(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's bundled sets (no download): returns x, y, kind."""
    from sklearn import datasets

    if name == "digits":
        d = datasets.load_digits()
        return d.images[..., None].astype("float32"), d.target, "image"  # 8x8 pixels in 0..16
    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
              "diabetes": datasets.load_diabetes}.get(name)
    if loader is None:
        raise DataError(f"unknown built-in data set {name!r} (built-in: {', '.join(BUILTIN)})")
    d = loader()
    return d.data.astype("float32"), d.target, "tabular"


def load_csv(path: str | Path, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A CSV (separator sniffed: `,` or `;` ...) with a header and a target column."""
    import pandas as pd

    path = Path(path)
    if not target:
        raise DataError(f"{path}: --target COLUMN is required for a CSV file")
    try:
        df = pd.read_csv(path, sep=None, engine="python")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from None
    if target not in df.columns:
        raise DataError(f"{path}: no column {target!r} (columns: {', '.join(map(str, df.columns))})")
    features = df.drop(columns=[target])
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise DataError(f"{path}: column {bad[0]!r} is not numeric; this version needs numeric feature columns")
    missing = [c for c in df.columns if df[c].isna().any()]
    if missing:
        raise DataError(f"{path}: column {missing[0]!r} has missing values")
    return features.to_numpy("float32"), df[target].to_numpy()


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """An `.npz` with arrays `x`, `y` and optionally `x_val`, `y_val`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as .npz: {exc}") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: no array {key!r} (arrays: {', '.join(arrays) or 'none'})")
    return arrays


def load_data(spec: str, target: str | None = None, **kwargs) -> Dataset:
    """What the CLI's `--data` names: a built-in set, a CSV file (+ target) or an `.npz` file."""
    if spec in BUILTIN:
        x, y, kind = load_builtin(spec)
        return make_dataset(x, y, kind=kind, name=spec, **kwargs)
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"{spec}: not a built-in data set ({', '.join(BUILTIN)}) and no such file")
    if path.suffix == ".npz":
        a = load_npz(path)
        val = (a["x_val"], a["y_val"]) if "x_val" in a and "y_val" in a else None
        return make_dataset(a["x"], a["y"], validation_data=val, name=path.name, **kwargs)
    x, y = load_csv(path, target)
    return make_dataset(x, y, kind="tabular", name=f"{path.name}:{target}", **kwargs)


# ---------------------------------------------------------------- checks and split


def make_dataset(x, y, *, validation_data=None, validation_split: float = 0.2, task: str | None = None,
                 kind: str | None = None, name: str = "arrays", seed: int = 0) -> Dataset:
    """Check inputs, infer task and kind, split off validation data, learn scaling facts."""
    x, y = _as_arrays(x, y, "training data")
    task = task or ("regression" if np.issubdtype(y.dtype, np.floating) else "classification")
    if task not in TASKS:
        raise DataError(f"task must be one of {TASKS}, not {task!r}")
    if x.ndim == 3:
        x = x[..., None]  # (n, h, w) grayscale images
    kind = kind or {2: "tabular", 4: "image"}.get(x.ndim)
    if kind not in KINDS:
        raise DataError(f"x has shape {x.shape}: expected (samples, features) or (samples, height, width[, channels])")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise DataError("validation_data must be a pair (x_val, y_val)")
        x_val, y_val = _as_arrays(*validation_data, "validation data")
        if x_val.ndim == 3 and x.ndim == 4:
            x_val = x_val[..., None]
        if x_val.shape[1:] != x.shape[1:]:
            raise DataError(f"validation x has shape {x_val.shape[1:]} per sample, training x has {x.shape[1:]}")
        x_train, y_train = x, y
    else:
        if not 0 < validation_split < 1:
            raise DataError(f"validation_split must be between 0 and 1, not {validation_split}")
        n_val = int(round(len(x) * validation_split))
        if n_val < 1 or len(x) - n_val < 1:
            raise DataError(f"{len(x)} samples are too few to split off {validation_split:.0%} for validation")
        from sklearn.model_selection import train_test_split

        stratify = y if task == "classification" and _can_stratify(y, n_val) else None
        x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=n_val, random_state=seed,
                                                          stratify=stratify)
    ds = Dataset(x_train, y_train, x_val, y_val, task=task, kind=kind, name=name)
    if task == "classification":
        _encode_labels(ds)
    else:
        ds.y_train, ds.y_val = ds.y_train.astype("float32"), ds.y_val.astype("float32")
        ds.target_mean, ds.target_std = float(ds.y_train.mean()), float(ds.y_train.std() or 1.0)
    if kind == "image":
        peak = float(np.max(ds.x_train))
        ds.pixel_scale = 1.0 / peak if peak > 1.0 else None
    else:
        ds.feature_mean = ds.x_train.mean(axis=0)
        ds.feature_var = ds.x_train.var(axis=0)
    return ds


def _as_arrays(x, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = np.asarray(x, dtype="float32")
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: x must be numeric ({exc})") from None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if len(x) == 0:
        raise DataError(f"{what}: x is empty")
    if x.ndim < 2:
        raise DataError(f"{what}: x has shape {x.shape}; expected one row per sample")
    if y.ndim != 1:
        raise DataError(f"{what}: y has shape {y.shape}; expected one label or target per sample")
    if len(x) != len(y):
        raise DataError(f"{what}: x has {len(x)} samples but y has {len(y)}")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: x contains NaN or infinite values")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(f"{what}: y contains NaN or infinite values")
    return x, y


def _can_stratify(y: np.ndarray, n_val: int) -> bool:
    _, counts = np.unique(y, return_counts=True)
    return counts.min() >= 2 and n_val >= len(counts)


def _encode_labels(ds: Dataset) -> None:
    """Map labels (ints, strings, bools) to 0..K-1; validation labels must be known classes."""
    classes = np.unique(ds.y_train)
    if len(classes) < 2:
        raise DataError(f"classification needs at least 2 classes; training labels hold only {classes.tolist()}")
    unknown = np.setdiff1d(np.unique(ds.y_val), classes)
    if len(unknown):
        raise DataError(f"validation labels {unknown[:5].tolist()} do not occur in the training labels")
    ds.class_names = classes.tolist()
    ds.y_train = np.searchsorted(classes, ds.y_train).astype("int32")
    ds.y_val = np.searchsorted(classes, ds.y_val).astype("int32")
