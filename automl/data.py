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

BUILTIN = ("digits", "breast_cancer", "wine", "diabetes")
KINDS = ("image", "tabular", "text", "sequence")
TASKS = ("classification", "regression")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MISSING = ""  # what a missing categorical value becomes (its own category when training had any)


class DataError(ValueError):
    """Input that cannot be searched on; the message names the input and what is wrong."""


@dataclass
class Column:
    """One table column and what the model learns about it from the training split."""

    name: str
    kind: str                       # numeric | categorical
    mean: float = 0.0               # numeric: over the non-missing training values
    std: float = 1.0
    missing: bool = False           # numeric: missing training values -> an indicator feature
    vocabulary: list[str] = field(default_factory=list)  # categorical: most frequent first


@dataclass
class Dataset:
    x_train: Any                    # ndarray; text: object array of str; table columns: {name: (n,) array}
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
    columns: list[Column] | None = None     # tables with categorical columns or missing values
    masked: bool = False                    # sequences: all-zero steps are padding
    extra: dict[str, Any] = field(default_factory=dict)  # caches (e.g. the text vocabulary)

    @property
    def input_shape(self) -> tuple:
        if self.columns is not None:
            return (len(self.columns),)
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.task == "classification" else None

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    @property
    def num_val(self) -> int:
        return len(self.y_val)

    def describe(self) -> dict[str, Any]:
        d = {"data": self.name, "data_kind": self.kind, "task": self.task, "train_samples": self.num_train,
             "val_samples": self.num_val, "input_shape": str(self.input_shape)}
        if self.task == "classification":
            d["num_classes"] = self.num_classes
        if self.columns is not None:
            d["columns"] = self._columns_summary()
        return d

    def summary(self) -> str:
        what = f"{self.num_classes} classes" if self.task == "classification" else "regression"
        shape = f"{self._columns_summary()}" if self.columns is not None else f"{self.input_shape}"
        return f"{self.name}: {self.num_train} train / {self.num_val} val, {self.kind} input {shape}, {what}"

    def _columns_summary(self) -> str:
        numeric = sum(c.kind == "numeric" for c in self.columns)
        missing = sum(c.missing or MISSING in c.vocabulary for c in self.columns)
        return f"{numeric} numeric + {len(self.columns) - numeric} categorical columns, {missing} with missing values"

    def fingerprint(self) -> str:
        """Hash of the data, stored with a study so resuming on other data is caught."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_val, self.y_val):
            for key, arr in sorted(a.items()) if isinstance(a, dict) else [("", a)]:
                h.update(f"{key}{arr.shape}".encode())
                if arr.dtype == object:  # strings: hash the text, not the object pointers
                    h.update("\x1f".join(map(str, arr.ravel())).encode())
                else:
                    h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]


# ---------------------------------------------------------------- files and folders


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


def load_csv(path: str | Path, target: str | None):
    """A CSV (separator sniffed: `,` or `;` ...) with a header; returns (feature DataFrame, target array).

    Text columns are categorical, empty cells are missing values; `make_dataset` checks the rest.
    """
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
    if df.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    return df.drop(columns=[target]), _target_column(df[target], f"{path}: target column {target!r}")


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


def load_folder(path: str | Path, image_size: tuple[int, int] | None = None) -> tuple[Any, np.ndarray, str]:
    """A folder per class of images or of `.txt` files, or a `.txt` file per class: returns x, y, kind."""
    path = Path(path)
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        files = sorted(p for p in path.glob("*.txt") if not p.name.startswith("."))
        if not files:
            raise DataError(f"{path}: expected one sub-folder per class (images or .txt files) "
                            f"or one .txt file per class; found neither")
        return _text_files_per_class(path, files)
    per_class = {d.name: sorted(f for f in d.rglob("*") if f.is_file() and not f.name.startswith("."))
                 for d in subdirs}
    for name, files in per_class.items():
        if not files:
            raise DataError(f"{path / name}: class folder is empty")
    suffixes = {f.suffix.lower() for files in per_class.values() for f in files}
    if suffixes <= set(IMAGE_SUFFIXES):
        return _image_folder(path, per_class, image_size)
    if suffixes == {".txt"}:
        texts, labels = [], []
        for name, files in per_class.items():
            texts += [_read_text(f) for f in files]
            labels += [name] * len(files)
        return np.array(texts, dtype=object), np.array(labels), "text"
    odd = sorted(suffixes - set(IMAGE_SUFFIXES) - {".txt"}) or [".txt mixed with images"]
    raise DataError(f"{path}: class folders must hold only images ({', '.join(IMAGE_SUFFIXES)}) or only .txt "
                    f"files; found {odd[0]!r}")


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _text_files_per_class(path: Path, files: list[Path]):
    texts, labels = [], []
    for f in files:
        lines = [line.strip() for line in _read_text(f).splitlines() if line.strip()]
        if not lines:
            raise DataError(f"{f}: no non-empty lines (one sample per line)")
        texts += lines
        labels += [f.stem] * len(lines)
    return np.array(texts, dtype=object), np.array(labels), "text"


def _image_folder(path: Path, per_class: dict[str, list[Path]], image_size):
    import tensorflow as tf

    images, labels, first = [], [], None
    for name, files in per_class.items():
        for f in files:
            try:
                img = tf.io.decode_image(f.read_bytes(), expand_animations=False).numpy()
            except Exception as exc:  # noqa: BLE001 - TensorFlow raises several types for bad files
                raise DataError(f"{f}: cannot decode as an image ({type(exc).__name__})") from None
            if image_size is not None:
                img = tf.image.resize(img, image_size).numpy()
            elif first is None:
                first = (f, img.shape[:2])
            elif img.shape[:2] != first[1]:
                raise DataError(f"{f}: image is {img.shape[1]}x{img.shape[0]} but {first[0]} is "
                                f"{first[1][1]}x{first[1][0]}; pass image_size=(height, width) to resize all")
            images.append(img)
            labels.append(name)
    channels = 3 if any(i.shape[-1] >= 3 for i in images) else 1
    images = [np.repeat(i, 3, axis=-1) if i.shape[-1] == 1 and channels == 3 else i[..., :channels] for i in images]
    return np.stack(images).astype("float32"), np.array(labels), "image"


def load_data(spec: str, target: str | None = None, **kwargs) -> Dataset:
    """What the CLI's `--data` names: a built-in set, a CSV file (+ target), an `.npz` file or a folder."""
    if spec in BUILTIN:
        x, y, kind = load_builtin(spec)
        return make_dataset(x, y, kind=kind, name=spec, **kwargs)
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


# ---------------------------------------------------------------- reading any input


def _read(x, y, kind: str | None, what: str, image_size=None):
    """Any supported input -> (x, y, kind): x an ndarray (float32, or object str for text) or a DataFrame."""
    import pandas as pd

    if _is_tf_dataset(x):
        if y is not None:
            raise DataError(f"{what}: a tf.data.Dataset holds its own labels; do not pass y as well")
        x, y = _from_tf_dataset(x, what)
    elif isinstance(x, (str, Path)):
        path = Path(x)
        if path.is_dir():
            if y is not None:
                raise DataError(f"{what}: the labels of {path} are its class folder names; do not pass y")
            x, y, found = load_folder(path, image_size)
            return _read(x, y, kind or found, what)
        if path.is_file() and path.suffix != ".npz":
            x, y = load_csv(path, y if isinstance(y, str) else None)
        else:
            raise DataError(f"{what}: {x!r} is neither a folder nor a CSV file (texts go in a list, not a string)")
    if y is None:
        raise DataError(f"{what}: y (labels or targets) is required")
    if isinstance(x, dict):
        x = pd.DataFrame(x) if _all_columns(x) else x
    if isinstance(x, pd.DataFrame):
        if isinstance(y, str):
            if y not in x.columns:
                raise DataError(f"{what}: no column {y!r} (columns: {', '.join(map(str, x.columns))})")
            x, y = x.drop(columns=[y]), _target_column(x[y], f"{what}: target column {y!r}")
        _expect(kind, "tabular", what, "a DataFrame")
        return _frame(x, what), _labels(y, what), "tabular"
    if isinstance(x, pd.Series):
        x = x.to_numpy()
    y = _labels(y, what)
    if _is_text(x):
        _expect(kind, "text", what, "strings")
        return _texts(x, what), y, "text"
    if kind == "text":
        raise DataError(f"{what}: expected text (a list or 1-D array of strings), got {_describe(x)}")
    if _is_ragged(x):
        _expect(kind, "sequence", what, "a list of variable-length sequences")
        return _pad_sequences(x, what), y, "sequence"
    try:
        x = np.asarray(x, dtype="float32")
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: x must be numeric ({exc})") from None
    if len(x) == 0:
        raise DataError(f"{what}: x is empty")
    if x.ndim < 2:
        raise DataError(f"{what}: x has shape {x.shape}; expected one row per sample")
    if kind == "sequence":
        if x.ndim == 2:
            x = x[..., None]  # (n, steps): one feature per step
        if x.ndim != 3:
            raise DataError(f"{what}: sequences have shape {x.shape}; expected (samples, steps[, features])")
    elif x.ndim == 3:
        x = x[..., None]  # (n, h, w) grayscale images
    found = kind or {2: "tabular", 3: "sequence", 4: "image"}.get(x.ndim)
    if found not in KINDS or {"image": 4, "tabular": 2, "sequence": 3}.get(found) != x.ndim:
        raise DataError(f"{what}: x has shape {x.shape}: expected (samples, features) or "
                        f"(samples, height, width[, channels])" + (f" for {kind} input" if kind else ""))
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0, 0])
        raise DataError(f"{what}: x contains NaN or infinite values (first in sample {bad}); "
                        f"use a pandas DataFrame to have missing table values handled")
    return x, y, found


def _expect(kind, found: str, what: str, got: str):
    if kind is not None and kind != found:
        raise DataError(f"{what}: expected {kind} input, got {got}")


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    return f"a {type(x).__name__}"


def _is_tf_dataset(x) -> bool:
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec")


def _all_columns(d: dict) -> bool:
    return all(isinstance(k, str) and np.ndim(v) == 1 for k, v in d.items())


def _is_text(x) -> bool:
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "US":
            return True
        x = x.ravel() if x.dtype == object and x.ndim == 2 and x.shape[1] == 1 else x
        return x.dtype == object and x.ndim == 1 and len(x) > 0 and isinstance(x[0], (str, bytes))
    return isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], (str, bytes))


def _texts(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=object)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise DataError(f"{what}: texts have shape {x.shape}; expected one string per sample")
    out = np.empty(len(x), dtype=object)
    for i, t in enumerate(x):
        if isinstance(t, bytes):
            try:
                t = t.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{what}: text sample {i} is not UTF-8") from None
        if not isinstance(t, str):
            raise DataError(f"{what}: text sample {i} is {t!r} ({type(t).__name__}), not a string")
        out[i] = t
    if not any(t.strip() for t in out):
        raise DataError(f"{what}: every text is empty")
    return out


def _is_ragged(x) -> bool:
    if isinstance(x, np.ndarray):
        return x.dtype == object and x.ndim == 1 and len(x) > 0 and np.ndim(x[0]) >= 1
    if hasattr(x, "to_list") and type(x).__name__ == "RaggedTensor":
        return True
    if not isinstance(x, (list, tuple)) or not x or np.ndim(x[0]) < 1:
        return False
    return len({len(s) for s in x}) > 1


def _pad_sequences(x, what: str) -> np.ndarray:
    """Variable-length sequences -> (n, longest, features), padded at the end with all-zero steps."""
    if type(x).__name__ == "RaggedTensor":
        x = x.to_list()
    seqs = []
    for i, s in enumerate(x):
        try:
            s = np.asarray(s, dtype="float32")
        except (TypeError, ValueError) as exc:
            raise DataError(f"{what}: sequence {i} is not numeric ({exc})") from None
        if s.ndim == 1:
            s = s[:, None]
        if s.ndim != 2:
            raise DataError(f"{what}: sequence {i} has shape {s.shape}; expected (steps,) or (steps, features)")
        if len(s) == 0:
            raise DataError(f"{what}: sequence {i} is empty")
        if s.shape[1] != (seqs[0].shape[1] if seqs else s.shape[1]):
            raise DataError(f"{what}: sequence {i} has {s.shape[1]} features per step, sequence 0 has {seqs[0].shape[1]}")
        if not np.isfinite(s).all():
            raise DataError(f"{what}: sequence {i} contains NaN or infinite values")
        seqs.append(s)
    return _pad_to(seqs, max(len(s) for s in seqs))


def _pad_to(seqs, steps: int) -> np.ndarray:
    out = np.zeros((len(seqs), steps, seqs[0].shape[-1]), dtype="float32")
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def _from_tf_dataset(ds, what: str):
    """Read a finite tf.data.Dataset of (x, y) elements or batches into memory."""
    import tensorflow as tf

    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise DataError(f"{what}: tf.data elements must be (x, y) pairs; got {spec}")
    if ds.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise DataError(f"{what}: the tf.data.Dataset is infinite (repeat()); pass a finite one")
    y_rank = spec[1].shape.rank
    if y_rank is None or y_rank > 2 or (y_rank == 2 and spec[1].shape[1] != 1):
        raise DataError(f"{what}: tf.data labels have shape {spec[1].shape}; expected one label per "
                        f"element () or per batch row (batch,)")
    batched = y_rank >= 1
    xs, ys = [], []
    for i, (xb, yb) in enumerate(ds.as_numpy_iterator()):
        if not batched:
            xs.append(xb)
            ys.append(yb)
            continue
        yb = np.reshape(yb, (-1,))
        rows = {k: len(v) for k, v in xb.items()} if isinstance(xb, dict) else {"x": len(xb)}
        if any(n != len(yb) for n in rows.values()):
            raise DataError(f"{what}: tf.data batch {i} has {len(yb)} labels but x rows {rows}")
        if isinstance(xb, dict):
            xs += [{k: v[j] for k, v in xb.items()} for j in range(len(yb))]
        else:
            xs += list(xb)
        ys += list(yb)
    if not xs:
        raise DataError(f"{what}: x is empty (the tf.data.Dataset yields nothing)")
    y = np.array([v.decode() if isinstance(v, bytes) else v for v in ys])
    if isinstance(xs[0], dict):
        import pandas as pd

        return pd.DataFrame([{k: v.decode() if isinstance(v, bytes) else v for k, v in row.items()} for row in xs]), y
    if isinstance(xs[0], bytes) or (isinstance(xs[0], np.ndarray) and xs[0].dtype == object):
        return list(xs), y
    if len({np.shape(v) for v in xs}) > 1:
        return [_unpad(v) for v in xs], y  # padded_batch pads each batch to its own longest element
    return np.stack(xs), y


def _unpad(seq: np.ndarray) -> np.ndarray:
    """Drop trailing all-zero steps (padding) from a sequence."""
    steps = np.reshape(seq, (len(seq), -1))
    keep = np.flatnonzero(np.any(steps != 0, axis=1))
    return seq[:keep[-1] + 1] if len(keep) else seq[:1]


# ---------------------------------------------------------------- tables


def _frame(df, what: str):
    """Check a DataFrame's columns; numeric -> float32 (NaN = missing), others -> str ('' = missing)."""
    import pandas as pd

    if df.shape[1] == 0:
        raise DataError(f"{what}: the table has no feature columns")
    if len(df) == 0:
        raise DataError(f"{what}: x is empty (the table has no rows)")
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{what}: column name {dup!r} occurs twice")
    out = {}
    for col, name in zip(df.columns, names):
        s = df[col]
        if s.isna().all():
            raise DataError(f"{what}: column {name!r} has no values (all missing)")
        if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
            if pd.api.types.is_complex_dtype(s.dtype):
                raise DataError(f"{what}: column {name!r} holds complex numbers")
            values = s.to_numpy(dtype="float32", na_value=np.nan)
            if np.isinf(values).any():
                raise DataError(f"{what}: column {name!r} has infinite values (row {int(np.argmax(np.isinf(values)))})")
            out[name] = values
        elif pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_timedelta64_dtype(s.dtype):
            raise DataError(f"{what}: column {name!r} has dtype {s.dtype}; convert it to numbers "
                            f"(e.g. day of week, hour) or strings first")
        else:  # str, object, category: categorical
            out[name] = np.array([MISSING if _is_missing(v) else str(v) for v in s], dtype=object)
    return pd.DataFrame(out)


def _is_missing(v) -> bool:
    import pandas as pd

    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, (float, np.floating)) and v != v)


def _target_column(s, what: str) -> np.ndarray:
    missing = s.isna()
    if missing.any():
        raise DataError(f"{what} has {int(missing.sum())} missing values (first at row {int(np.argmax(missing))})")
    return s.to_numpy()


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
            cols.append(Column(name, "numeric", float(present.mean()), float(present.std() or 1.0),
                               missing=bool(len(present) < len(values))))
        else:
            counts = s.value_counts()
            order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            cols.append(Column(name, "categorical", vocabulary=[str(k) for k, _ in order]))
    return cols


def _numeric(s) -> bool:
    """After `_frame` a column is float32 (numeric) or strings (categorical)."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(s.dtype)


def _as_columns(df, columns: list[Column]) -> dict[str, np.ndarray]:
    return {c.name: df[c.name].to_numpy(dtype="float32" if c.kind == "numeric" else object) for c in columns}


# ---------------------------------------------------------------- labels


def _labels(y, what: str) -> np.ndarray:
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        raise DataError(f"{what}: y has shape {y.shape}; pass one label per sample (a class index or "
                        f"name), not one-hot rows")
    if y.ndim != 1:
        raise DataError(f"{what}: y has shape {y.shape}; expected one label or target per sample")
    if y.dtype == object:
        bad = [i for i, v in enumerate(y) if _is_missing(v)]
        if bad:
            raise DataError(f"{what}: y has {len(bad)} missing labels (first at sample {bad[0]})")
        types = {type(v.decode() if isinstance(v, bytes) else v).__name__ for v in y}
        if "str" in types and len(types) > 1:
            raise DataError(f"{what}: labels mix types ({', '.join(sorted(types))}); use all numbers or all strings")
        y = np.array([v.decode() if isinstance(v, bytes) else v for v in y])
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(f"{what}: y contains NaN or infinite values (first at sample {int(np.argmax(~np.isfinite(y)))})")
    return y


def _check_task_labels(y: np.ndarray, task: str, what: str):
    if task == "regression" and not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise DataError(f"{what}: regression targets must be numbers; y has dtype {y.dtype} ({y[:3].tolist()}...)")
    if task == "classification" and np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
        raise DataError(f"{what}: classification labels must be class indices or names; y holds "
                        f"fractional values such as {y[y != np.round(y)][0]} (use task='regression')")


# ---------------------------------------------------------------- checks and split


def make_dataset(x, y=None, *, validation_data=None, validation_split: float = 0.2, task: str | None = None,
                 kind: str | None = None, name: str = "arrays", seed: int = 0,
                 image_size: tuple[int, int] | None = None) -> Dataset:
    """Check inputs, infer task and kind, split off validation data, learn the facts the model bakes in.

    `x` is any input described in the module docstring (a CSV path takes `y` as its target column
    name; a folder takes no `y`). `kind` forces a kind (`"sequence"` for padded 2-D/3-D arrays).
    """
    if kind is not None and kind not in KINDS:
        raise DataError(f"kind must be one of {KINDS}, not {kind!r}")
    if task is not None and task not in TASKS:
        raise DataError(f"task must be one of {TASKS}, not {task!r}")
    x, y, kind = _read(x, y, kind, "training data", image_size)
    if len(x) != len(y):
        raise DataError(f"training data: x has {len(x)} samples but y has {len(y)}")
    task = task or ("regression" if np.issubdtype(y.dtype, np.floating) else "classification")
    _check_task_labels(y, task, "training data")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise DataError("validation_data must be a pair (x_val, y_val)")
        x_val, y_val, _ = _read(*validation_data, kind, "validation data", image_size)
        if len(x_val) != len(y_val):
            raise DataError(f"validation data: x has {len(x_val)} samples but y has {len(y_val)}")
        _check_task_labels(y_val, task, "validation data")
        x_train, y_train = x, y
        x_train, x_val = _match(x_train, x_val, kind)
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
    _learn_input_facts(ds)
    return ds


def _match(x_train, x_val, kind: str):
    """Validation inputs must fit the model built from the training inputs."""
    if kind == "tabular" and hasattr(x_train, "columns") != hasattr(x_val, "columns"):
        raise DataError("validation data: x must be a table like the training x (both DataFrames or both arrays)")
    if hasattr(x_train, "columns"):
        missing = [c for c in x_train.columns if c not in x_val.columns]
        if missing:
            raise DataError(f"validation data: no column {missing[0]!r} (training columns: {', '.join(x_train.columns)})")
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
        return _pad_to(x_train, steps), _pad_to(x_val, steps)
    if x_val.shape[1:] != x_train.shape[1:]:
        raise DataError(f"validation data: x has shape {x_val.shape[1:]} per sample, training x has {x_train.shape[1:]}")
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
        raise DataError(f"training data: labels mix types ({sorted({type(v).__name__ for v in ds.y_train})}); "
                        f"use all numbers or all strings") from None
    if len(classes) < 2:
        raise DataError(f"classification needs at least 2 classes; training labels hold only {classes.tolist()}")
    unknown = np.setdiff1d(np.unique(ds.y_val), classes)
    if len(unknown):
        raise DataError(f"validation labels {unknown[:5].tolist()} do not occur in the training labels")
    ds.class_names = classes.tolist()
    ds.y_train = np.searchsorted(classes, ds.y_train).astype("int32")
    ds.y_val = np.searchsorted(classes, ds.y_val).astype("int32")


# ---------------------------------------------------------------- new inputs for a trained model


def model_inputs(ds: Dataset, x):
    """New samples in the form the model built for `ds` takes (same checks as for training)."""
    import pandas as pd

    what = "x"
    if isinstance(x, dict) and ds.kind == "tabular":
        x = pd.DataFrame(x)
    names = [c.name for c in ds.columns] if ds.columns is not None else ds.extra.get("feature_names")
    if isinstance(x, pd.DataFrame) and names:
        x = x.rename(columns=str)
        missing = [n for n in names if n not in x.columns]
        if missing:
            raise DataError(f"{what}: no column {missing[0]!r} (the model takes {', '.join(names)})")
        x = x[names]  # the training order; other columns (e.g. the target) are ignored
    if ds.columns is not None:
        if not isinstance(x, pd.DataFrame):
            raise DataError(f"{what}: the model takes table columns ({', '.join(names)}); "
                            f"pass a DataFrame or a dict of columns")
        df = _frame(x, what)
        for c in ds.columns:
            if c.kind == "categorical" and _numeric(df[c.name]):
                df[c.name] = np.array([MISSING if v != v else _category(v) for v in df[c.name]], dtype=object)
            elif c.kind == "numeric" and not _numeric(df[c.name]):
                raise DataError(f"{what}: column {c.name!r} is numeric in the training data but holds text here")
        return _as_columns(df, ds.columns)
    if isinstance(x, pd.DataFrame):
        x = x.to_numpy()
    xs, _, _ = _read(x, np.zeros(len(x)), ds.kind, what)
    if ds.kind == "text":
        return xs
    steps = ds.input_shape[0]
    if ds.kind == "sequence" and xs.shape[2:] == ds.input_shape[1:] and xs.shape[1] != steps:
        if xs.shape[1] > steps:
            raise DataError(f"{what}: sequences have {xs.shape[1]} steps; the model takes at most {steps}")
        xs = _pad_to(xs, steps)
    if xs.shape[1:] != ds.input_shape:
        raise DataError(f"{what}: samples have shape {xs.shape[1:]}; the model takes {ds.input_shape}")
    return xs


def _category(v) -> str:
    """A number in a categorical column as its text ("3", not "3.0", for whole numbers)."""
    return str(int(v)) if float(v).is_integer() else str(v)


def encode_targets(ds: Dataset, y) -> np.ndarray:
    """Labels in the user's values -> what the model was trained on (class indices or float targets)."""
    y = _labels(y, "y")
    if ds.task == "regression":
        _check_task_labels(y, "regression", "y")
        return y.astype("float32")
    classes = np.asarray(ds.class_names)
    unknown = [v for v in np.unique(y).tolist() if v not in set(classes.tolist())]
    if unknown:
        raise DataError(f"y: labels {unknown[:5]} are not among the trained classes {ds.class_names}")
    return np.searchsorted(classes, y).astype("int32")
