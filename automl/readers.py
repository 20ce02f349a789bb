"""Reading any supported input into arrays: built-in sets, table files (tables.py) and `.npz` files,
class folders of images or texts, tables, texts, variable-length sequences and `tf.data` datasets.

What `make_dataset` (data.py) reads before it splits and learns from the data. Every check here
names the input, the column, sample or file, and the shape at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .images import IMAGE_SUFFIXES, image_files, image_folder
from .tables import EXCEL, PARQUET, decode_text, is_missing, load_table, read_frame, read_table, target_column

BUILTIN = ("digits", "breast_cancer", "wine", "diabetes")
KINDS = ("image", "tabular", "text", "sequence")


def load_builtin(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's bundled sets (no download): returns x, y, kind."""
    from sklearn import datasets

    if name == "digits":
        d = datasets.load_digits()
        return d.images[..., None].astype("float32"), d.target, "image"  # 8x8 pixels in 0..16
    loader = {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes,
    }.get(name)
    if loader is None:
        raise DataError(f"unknown built-in data set {name!r} (built-in: {', '.join(BUILTIN)})")
    d = loader()
    return d.data.astype("float32"), d.target, "tabular"


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


def load_folder(
    path: str | Path, image_size: tuple[int, int] | None = None, channels: int | None = None
) -> tuple[Any, np.ndarray, str]:
    """A folder per class of images or of `.txt` files, or a `.txt` file per class: returns x, y, kind.
    Images: resized to `image_size` and given `channels` when those are set."""
    path = Path(path)
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        files = sorted(p for p in path.glob("*.txt") if not p.name.startswith("."))
        if not files:
            raise DataError(
                f"{path}: expected one sub-folder per class (images or .txt files) "
                f"or one .txt file per class; found neither"
            )
        return _text_files_per_class(path, files)
    per_class = {d.name: sorted(f for f in d.rglob("*") if f.is_file() and not f.name.startswith(".")) for d in subdirs}
    for name, files in per_class.items():
        if not files:
            raise DataError(f"{path / name}: class folder is empty")
    suffixes = {f.suffix.lower() for files in per_class.values() for f in files}
    if suffixes <= set(IMAGE_SUFFIXES):
        return image_folder(per_class, image_size, channels)
    if suffixes == {".txt"}:
        texts, labels = [], []
        for name, files in per_class.items():
            texts += [_read_text(f) for f in files]
            labels += [name] * len(files)
        return np.array(texts, dtype=object), np.array(labels), "text"
    odd = sorted(suffixes - set(IMAGE_SUFFIXES) - {".txt"}) or [".txt mixed with images"]
    raise DataError(
        f"{path}: class folders must hold only images ({', '.join(IMAGE_SUFFIXES)}) or only .txt "
        f"files; found {odd[0]!r}"
    )


def _read_text(file: Path) -> str:
    return decode_text(file.read_bytes(), str(file))


def text_lines(file: Path) -> list[str]:
    """The non-empty lines of a text file (UTF-8, else cp1252), stripped: one sample per line."""
    return [line.strip() for line in _read_text(file).splitlines() if line.strip()]


def _text_files_per_class(path: Path, files: list[Path]):
    texts, labels = [], []
    for f in files:
        lines = text_lines(f)
        if not lines:
            raise DataError(f"{f}: no non-empty lines (one sample per line)")
        texts += lines
        labels += [f.stem] * len(lines)
    return np.array(texts, dtype=object), np.array(labels), "text"


def read_unlabeled(x, kind: str, what: str, image_size=None) -> np.ndarray:
    """Samples without labels, as `read_input` reads `x`: arrays, a list of variable-length series, an
    `.npz` file with an array `x`, or a folder of images (sub-folders included, names ignored)."""
    if isinstance(x, (str, Path)):
        path = Path(x)
        if path.is_dir():
            images = image_files(path) or []
            if not images:
                raise DataError(f"{what}: {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            x = image_folder({"": images}, image_size)[0]
        elif path.is_file() and path.suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as f:
                    if "x" not in f.files:
                        raise DataError(f"{what}: {path}: no array 'x' (arrays: {', '.join(f.files) or 'none'})")
                    x = f["x"]
            except (OSError, ValueError) as exc:
                raise DataError(f"{what}: {path}: cannot read as .npz: {exc}") from None
        else:
            raise DataError(f"{what}: {x!r} is neither a folder of images nor an .npz file with an array 'x'")
    if _is_tf_dataset(x) or isinstance(x, dict) or hasattr(x, "columns"):
        raise DataError(f"{what}: expected an array, a list of series, an .npz file or a folder, got {_describe(x)}")
    try:
        n = len(x)
    except TypeError:
        raise DataError(f"{what}: expected an array of samples, got {_describe(x)}") from None
    if n == 0:
        raise DataError(f"{what}: x is empty")
    return read_input(x, np.zeros(n, dtype="int64"), kind, what)[0]


def read_samples_file(path: Path, kind: str, column: str | None = None):
    """New samples in a file, for a trained model of `kind`: a table file (CSV, Parquet; a text model
    reads its one column, or `column`), a `.txt` file of texts (one per line) or an `.npz` file with
    an array `x`. Image files are read by `images.read_image_files`."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_unlabeled(path, kind, "x")
    if suffix == ".txt" and kind == "text":
        return np.array(text_lines(path), dtype=object)
    if suffix not in (".csv", *PARQUET, *EXCEL):
        raise DataError(f"{path}: expected a .csv, .parquet, .txt or .npz file, or image files, for a {kind} model")
    return _samples_of(read_frame(path), path, kind, column)


def read_labelled_file(path: Path, kind: str, target: str, column: str | None = None):
    """(samples, labels) of a table file (CSV, Parquet) with its `target` column, to score a trained
    model on rows it has not seen (`automl predict --target`)."""
    if path.suffix.lower() not in (".csv", *PARQUET):
        raise DataError(f"{path}: --target names a column of a CSV or Parquet file; this is not one")
    x, y = load_table(path, target)
    return _samples_of(x, path, kind, column), y


def _samples_of(df, path: Path, kind: str, column: str | None):
    """A table file's frame as a model of `kind` reads it: whole, or a text model's one column."""
    if kind != "text":
        return df
    if column is None and len(df.columns) == 1:
        column = df.columns[0]
    if column is None or column not in df.columns:
        raise DataError(
            f"{path}: name the text column (automl predict --column NAME) among {', '.join(map(str, df.columns))}"
        )
    return df[[column]]  # read_input reads a text model's one column (_text_column)


def read_input(x, y, kind: str | None, what: str, image_size=None, predicting: bool = False):
    """Any supported input -> (x, y, kind): x an ndarray (float32, or object str for text) or a DataFrame.
    `predicting`: new samples for a trained model; checks meant for training data (every text empty,
    a table column all missing) do not apply to them."""
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
            return read_input(x, y, kind or found, what, predicting=predicting)
        if path.is_file() and path.suffix != ".npz":
            x, y = load_table(path, y if isinstance(y, str) else None)
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
            x, y = x.drop(columns=[y]), target_column(x[y], f"{what}: target column {y!r}")
        if kind == "text" or (kind is None and _free_text(x)):
            return _texts(_text_column(x, what), what, predicting), read_labels(y, what), "text"
        if kind == "sequence":
            x = _series_rows(x, what)
        else:
            _expect(kind, "tabular", what, "a DataFrame")
            return read_table(x, what, predicting), read_labels(y, what), "tabular"
    if isinstance(x, pd.Series):
        x = x.to_numpy()
    y = read_labels(y, what)
    if _is_text(x):
        _expect(kind, "text", what, "strings")
        return _texts(x, what, predicting), y, "text"
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
    x_kind = kind or {2: "tabular", 3: "sequence", 4: "image"}.get(x.ndim)
    if x_kind not in KINDS or {"image": 4, "tabular": 2, "sequence": 3}.get(x_kind) != x.ndim:
        raise DataError(
            f"{what}: x has shape {x.shape}: expected (samples, features) or "
            f"(samples, height, width[, channels])" + (f" for {kind} input" if kind else "")
        )
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0, 0])
        raise DataError(
            f"{what}: x contains NaN or infinite values (first in sample {bad}); "
            f"use a pandas DataFrame to have missing table values handled"
        )
    return x, y, x_kind


TEXT_WORDS = 3  # a string column with a median of this many words per value or more holds sentences


def sentences(column, varied: bool = False) -> bool:
    """Whether a table column holds texts: strings of a median of TEXT_WORDS words or more and, if
    `varied`, more than half of them distinct (a multi-word category such as "married, no children"
    stays a category)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column.dtype):
        return False
    values = column.dropna().astype(str)
    values = values[values.str.strip() != ""]  # a missing value, as read_table writes it
    if len(values) == 0 or float(values.str.split().str.len().median()) < TEXT_WORDS:
        return False
    return not varied or values.nunique() > len(values) / 2


def _free_text(df) -> bool:
    """One column of sentences (a CSV of `text,label`): a text task, not a one-column table whose
    category would be memorised per row."""
    return df.shape[1] == 1 and sentences(df.iloc[:, 0])


def _text_column(df, what: str):
    """A table's one column as texts (an empty cell is an empty text, a number its digits)."""
    if df.shape[1] != 1:
        raise DataError(
            f"{what}: a text model reads one column of text; the table has {df.shape[1]} "
            f"({', '.join(map(str, df.columns))}): keep the text column and the target only"
        )
    return df.iloc[:, 0].fillna("").astype(str).to_numpy(dtype=object)


def _series_rows(df, what: str):
    """A table of one series per row, one step per column (as UCR's CSV files hold them): a 2-D array,
    or variable-length series where rows end in empty cells."""
    import pandas as pd

    for name in df.columns:  # a column empty in every row (the longest series are short) has no dtype
        if df[name].notna().any() and not pd.api.types.is_numeric_dtype(df[name].dtype):
            raise DataError(
                f"{what}: column {name!r} is not numeric; a table of sequences holds one series per row, "
                f"one step per column (drop identifier columns)"
            )
    values = df.astype("float32").to_numpy()
    present = ~np.isnan(values)
    if present.all():
        return values
    lengths = present.sum(axis=1)
    for i, n in enumerate(lengths):
        if n == 0 or not present[i, :n].all():
            raise DataError(
                f"{what}: row {i} has an empty cell before its last value; a series may only end early "
                f"(empty cells at the end of its row)"
            )
    return [row[:n] for row, n in zip(values, lengths)]


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


def _texts(x, what: str, predicting: bool = False) -> np.ndarray:
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
    if not predicting and not any(t.strip() for t in out):
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
    seqs: list[np.ndarray] = []
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
            raise DataError(
                f"{what}: sequence {i} has {s.shape[1]} features per step, sequence 0 has {seqs[0].shape[1]}"
            )
        if not np.isfinite(s).all():
            raise DataError(f"{what}: sequence {i} contains NaN or infinite values")
        seqs.append(s)
    return pad_to(seqs, max(len(s) for s in seqs))


def pad_to(seqs, steps: int) -> np.ndarray:
    out = np.zeros((len(seqs), steps, seqs[0].shape[-1]), dtype="float32")
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
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
        raise DataError(
            f"{what}: tf.data labels have shape {spec[1].shape}; expected one label per "
            f"element () or per batch row (batch,)"
        )
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
    return seq[: keep[-1] + 1] if len(keep) else seq[:1]


def read_labels(y, what: str) -> np.ndarray:
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        raise DataError(
            f"{what}: y has shape {y.shape}; pass one label per sample (a class index or name), not one-hot rows"
        )
    if y.ndim != 1:
        raise DataError(f"{what}: y has shape {y.shape}; expected one label or target per sample")
    if y.dtype == object:
        bad = [i for i, v in enumerate(y) if is_missing(v)]
        if bad:
            raise DataError(f"{what}: y has {len(bad)} missing labels (first at sample {bad[0]})")
        types = {type(v.decode() if isinstance(v, bytes) else v).__name__ for v in y}
        if "str" in types and len(types) > 1:
            raise DataError(f"{what}: labels mix types ({', '.join(sorted(types))}); use all numbers or all strings")
        y = np.array([v.decode() if isinstance(v, bytes) else v for v in y])
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(
            f"{what}: y contains NaN or infinite values (first at sample {int(np.argmax(~np.isfinite(y)))})"
        )
    return y


CLASSES_FEW = 20  # whole-number labels with at most this many values are classes, whatever the rows
CLASSES_SHARE_SMALL, CLASSES_SHARE_LARGE, LARGE_ROWS = 0.1, 0.05, 1000  # ... or in this share of rows
CLASSES_MAX = 1000


def infer_task(y: np.ndarray) -> str:
    """Regression for decimal targets, and for whole numbers with many values (prices, counts, scores:
    over 20 values and over 10 % of the rows, 5 % past 1,000 rows, or over 1,000 values); classification
    for the rest (labels, names, class numbers, also written as 1.0). Why not "integers are classes,
    floats numbers": a CSV's whole-number prices or scores are integers to pandas, and as hundreds of
    classes of a few rows each they failed (validation values unseen in training); labels saved from a
    column that once held a gap are written 0.0 / 1.0. AutoGluon infers so too; `task=` (`--task`)
    decides."""
    if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
        return "regression"
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        return "classification"
    distinct = len(np.unique(y))
    share = CLASSES_SHARE_SMALL if len(y) <= LARGE_ROWS else CLASSES_SHARE_LARGE
    many = distinct > CLASSES_MAX or (distinct > CLASSES_FEW and distinct > share * len(y))
    return "regression" if many else "classification"


def check_task_labels(y: np.ndarray, task: str, what: str):
    if task == "regression" and not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise DataError(f"{what}: regression targets must be numbers; y has dtype {y.dtype} ({y[:3].tolist()}...)")
    if task == "classification" and np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
        raise DataError(
            f"{what}: classification labels must be class indices or names; y holds "
            f"fractional values such as {y[y != np.round(y)][0]} (use task='regression')"
        )
