"""Checks of the data before training: what would make a search's numbers mislead.

Why: a search optimises whatever validation score it is given. Duplicates between training and
validation inflate it, a column that leaks the label makes every trial look perfect, a rare class
makes accuracy reward ignoring it, wrong labels cap it. These are cheap to find before hours of
training and expensive to find after. Every finding names the columns and sample indices at fault
(training-split indices unless it says validation) and, where there is one, what to do.

`check_dataset(ds)` runs on a `Dataset` (the search does, at its start); `automl.check(x, y)` and
`automl check --data ...` take raw inputs like a search does.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import Dataset, make_dataset
from .names import input_names
from .tables import MISSING

SHOWN = 10  # sample indices listed per finding
IMBALANCE_RATIO = 3.0  # largest / smallest class count from which balance is worth acting on
LEAK_SCORE = 0.98  # one column alone predicts the validation labels this well: suspect leakage
LEAK_BINS, LEAK_BINS_MAX = 32, 128  # quantile bins of a numeric column for that (4+ training rows a bin)
NOISE_SAMPLE = 4000  # training samples the label-noise check looks at (nearest neighbours cost n^2)
NOISE_NEIGHBOURS = 5
NEAR_SHARE = 0.05  # near copies: closer than this share of the median nearest-neighbour distance
OUTLIER_Z = 10.0  # robust z-score (median / MAD) beyond which a numeric value is extreme
OUTLIER_SHARE = 0.01  # extreme values are rare: more than this share of a column is a mode of its own
ID_SHARE = 0.99  # integer values distinct in this share of the rows: an identifier


@dataclass
class Finding:
    check: str  # class_balance, duplicates, train_val_overlap, label_conflict, constant_column, id_column,
    #             leakage, missing_values, label_noise, outliers, sequence_length
    severity: str  # warning (acting on it changes the result) | info
    message: str
    columns: list[str] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)  # training indices (first SHOWN)
    val_samples: list[int] = field(default_factory=list)  # validation indices, where it concerns them
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataReport:
    data: str
    kind: str
    task: str
    train_samples: int
    val_samples: int
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self, warnings_only: bool = False) -> list[str]:
        """One line per finding, warnings first (only those: what a search prints before it starts)."""
        ordered = sorted(self.findings, key=lambda f: f.severity != "warning")
        shown = [f for f in ordered if f.severity == "warning" or not warnings_only]
        head = f"data checks ({self.data}): {len(self.warnings)} warning(s), {len(self.findings)} finding(s)"
        if warnings_only and len(self.findings) > len(shown):
            head += " (all in data_report.md on the search's MLflow run)"
        return [head, *[f"  {f.severity}: {f.message}" for f in shown]]

    def markdown(self) -> str:
        lines = [
            f"# Data report: {self.data}",
            "",
            f"{self.kind} {self.task}, {self.train_samples} training / {self.val_samples} validation samples; "
            f"checked in {self.seconds:.2f} s.",
            "",
        ]
        if not self.findings:
            return "\n".join([*lines, "No problem found.", ""])
        lines += ["| severity | check | finding | columns | samples |", "| --- | --- | --- | --- | --- |"]
        for f in sorted(self.findings, key=lambda f: f.severity != "warning"):
            samples = ", ".join(map(str, f.samples)) + (
                f"; val {', '.join(map(str, f.val_samples))}" if f.val_samples else ""
            )
            lines.append(
                f"| {f.severity} | {f.check} | {f.message.replace('|', '/')} | {', '.join(f.columns)} | {samples} |"
            )
        return "\n".join([*lines, ""])

    def write(self, folder: str | Path) -> list[Path]:
        """`data_report.json` and `data_report.md` in `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / "data_report.json", folder / "data_report.md"]
        paths[0].write_text(json.dumps(self.to_dict(), indent=2, default=_plain))
        paths[1].write_text(self.markdown())
        return paths


def check(x, y=None, *, validation_data=None, validation_split: float = 0.2, task=None, kind=None, seed: int = 0):
    """Check raw inputs as a search would split them (same arguments as `Search.fit`)."""
    ds = make_dataset(x, y, validation_data=validation_data, validation_split=validation_split, task=task, kind=kind,
                      seed=seed)  # fmt: skip
    return check_dataset(ds)


def check_and_record(ds: Dataset, tracking_uri: str, run_id: str) -> DataReport:
    """What a search does at its start: check, and put `data_report.json`/`.md` on its MLflow run."""
    import tempfile

    from .tracking import log_to_run

    try:
        report = check_dataset(ds)
    except Exception as exc:  # a check must never cost the search: say so and go on
        report = DataReport(ds.name, ds.kind, ds.task, ds.num_train, ds.num_val)
        report.findings.append(Finding("error", "info", f"the checks stopped: {type(exc).__name__}: {exc}"))
    with tempfile.TemporaryDirectory(prefix="automl-data-") as tmp:
        report.write(tmp)
        log_to_run(tracking_uri, run_id, {"data_check_warnings": len(report.warnings)}, {}, (tmp, ""))
    return report


def check_dataset(ds: Dataset) -> DataReport:
    started = time.perf_counter()
    report = DataReport(ds.name, ds.kind, ds.task, ds.num_train, ds.num_val)
    out = report.findings
    if ds.task == "classification":
        out += _class_balance(ds)
    train_keys, val_keys = _sample_keys(ds.x_train, ds.kind), _sample_keys(ds.x_val, ds.kind)
    out += _duplicates(train_keys, val_keys, ds.y_train, ds.task)
    columns = _table_columns(ds.x_train, ds)
    if columns:
        out += _columns(columns, ds)
    features, val_features = _features(ds, ds.x_train), _features(ds, ds.x_val)
    if features is not None and val_features is not None and ds.num_train > 2:
        neighbours = _Neighbours(features, val_features)
        out += _near_duplicates(neighbours)
        if ds.task == "classification":
            out += _label_noise(neighbours, ds.y_train)
    if ds.kind == "sequence":
        out += _sequence_lengths(ds.x_train)
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------- labels


def _class_balance(ds: Dataset) -> list[Finding]:
    classes, counts = np.unique(ds.y_train, return_counts=True)
    names = [str(ds.class_names[int(c)]) if ds.class_names is not None else str(c) for c in classes]
    shares = {n: round(int(c) / len(ds.y_train), 4) for n, c in zip(names, counts)}
    ratio = float(counts.max() / counts.min())
    found = []
    if ratio >= IMBALANCE_RATIO:
        rare = names[int(np.argmin(counts))]
        found.append(
            Finding(
                "class_balance",
                "warning",
                f"classes are imbalanced ({ratio:.1f}:1; rarest {rare!r} is {shares[rare]:.1%} of training): "
                "accuracy rewards predicting the common class; search `class_weight: [none, balanced]` in the "
                "training section",
                details={"shares": shares, "ratio": ratio},
            )
        )
    missing = sorted(set(range(len(ds.class_names or []))) - set(np.unique(ds.y_val).tolist()))
    if ds.class_names is not None and missing:
        found.append(
            Finding(
                "class_balance",
                "info",
                f"{len(missing)} class(es) never occur in validation "
                f"({', '.join(str(ds.class_names[i]) for i in missing[:5])})",
                details={"missing_in_validation": [str(ds.class_names[i]) for i in missing]},
            )
        )
    return found


# ---------------------------------------------------------------- duplicates


def _normalise_text(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", str(s).lower())).strip()


def _sample_keys(x, kind: str) -> dict[str, np.ndarray]:
    """Per sample: an `exact` hash, and for texts a `near` one of the normalised text (lower case, no
    punctuation, single spaces); numbers are compared by distance instead (`_neighbours`)."""
    if isinstance(x, dict):  # table columns: pandas' 64-bit hash of each row, vectorised (joining every
        import pandas as pd  # value as text took 8 of 11 s on 300,000 rows of 36 columns)

        frame = pd.DataFrame({name: x[name] for name in sorted(x)})
        return {"exact": pd.util.hash_pandas_object(frame, index=False).to_numpy()}
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind in "US":
        return {
            "exact": np.array([_h(str(s)) for s in arr]),
            "near": np.array([_h(_normalise_text(s)) for s in arr]),
        }
    return {"exact": _row_hashes(np.ascontiguousarray(arr.reshape(len(arr), -1).astype("float64")))}


def _row_hashes(a: np.ndarray) -> np.ndarray:
    return np.array([_h(row.tobytes()) for row in a])


def _h(value) -> str:
    data = value if isinstance(value, bytes) else str(value).encode()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def _duplicates(train: dict, val: dict, y: np.ndarray, task: str) -> list[Finding]:
    found: list[Finding] = []
    for how in [h for h in ("exact", "near") if h in train]:
        keys = train[how]
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        repeated = np.flatnonzero(counts[inverse] > 1)
        extra = len(repeated) - int((counts > 1).sum())  # copies beyond the first of each group
        if how == "near":
            exact_extra = sum(f.details.get("copies", 0) for f in found if f.check == "duplicates")
            if extra <= exact_extra:
                break  # nothing near that is not exact
        if extra:
            groups = [np.flatnonzero(inverse == g).tolist() for g in np.flatnonzero(counts > 1)[:SHOWN]]
            found.append(
                Finding(
                    "duplicates",
                    "warning" if extra / len(keys) >= 0.01 else "info",
                    f"{extra} training sample(s) are {'exact' if how == 'exact' else 'near'} copies of others "
                    f"({extra / len(keys):.1%}): they weigh more in training; first groups {groups[:3]}",
                    samples=repeated[:SHOWN].tolist(),
                    details={"copies": extra, "groups": groups, "how": how},
                )
            )
            if how == "exact" and task == "classification":
                conflicts = [g for g in (np.flatnonzero(inverse == k) for k in np.flatnonzero(counts > 1))
                             if len(set(y[g].tolist())) > 1]  # fmt: skip
                if conflicts:
                    found.append(
                        Finding(
                            "label_conflict",
                            "warning",
                            f"{len(conflicts)} group(s) of identical training samples carry different labels "
                            f"(e.g. samples {conflicts[0][:5].tolist()}): at most one label of each can be right",
                            samples=np.concatenate(conflicts)[:SHOWN].tolist(),
                            details={"groups": [g[:SHOWN].tolist() for g in conflicts[:SHOWN]]},
                        )
                    )
    for how in [h for h in ("exact", "near") if h in train]:
        shared = np.isin(val[how], train[how])
        if shared.any():
            idx = np.flatnonzero(shared)
            train_idx = np.flatnonzero(np.isin(train[how], val[how][idx]))
            found.append(
                Finding(
                    "train_val_overlap",
                    "warning",
                    f"{len(idx)} validation sample(s) ({len(idx) / len(val[how]):.1%}) are {how} copies of training "
                    "samples: the validation score overrates the model on new data",
                    samples=train_idx[:SHOWN].tolist(),
                    val_samples=idx[:SHOWN].tolist(),
                    details={"count": len(idx), "how": how},
                )
            )
            break
    return found


# ---------------------------------------------------------------- table columns


def _table_columns(x, ds: Dataset) -> dict[str, np.ndarray] | None:
    """A split's columns by name (tables only)."""
    if ds.kind != "tabular":
        return None
    if isinstance(x, dict):  # keyed by the model's input names: reported by the column names
        keys = input_names([c.name for c in ds.columns]) if ds.columns else {k: k for k in x}
        return {name: np.asarray(x[key]) for name, key in keys.items()}
    names = ds.extra.get("feature_names") or [f"x{i}" for i in range(x.shape[1])]
    return {str(n): x[:, i] for i, n in enumerate(names)}


def _numeric(v: np.ndarray) -> np.ndarray | None:
    if v.dtype.kind in "fiub":
        return v.astype("float64")
    return None


def _columns(columns: dict[str, np.ndarray], ds: Dataset) -> list[Finding]:
    found: list[Finding] = []
    n = len(ds.y_train)
    val = _table_columns(ds.x_val, ds) or {}
    texts = {c.name: c.kind == "text" for c in ds.columns or []}
    for name, v in columns.items():
        num = _numeric(v)
        missing = np.isnan(num) if num is not None else np.isin(v.astype(str), [MISSING, "nan", "None"])
        share = float(missing.mean())
        if share > 0:
            found.append(
                Finding(
                    "missing_values",
                    "warning" if share >= 0.5 else "info",
                    f"column {name!r}: {share:.1%} missing"
                    + (" (the model gets an indicator; a column this empty may be noise)" if share >= 0.5 else ""),
                    columns=[name],
                    samples=np.flatnonzero(missing)[:SHOWN].tolist(),
                    details={"share": share},
                )
            )
        present = num[~missing] if num is not None else v[~missing].astype(str)
        distinct = len(np.unique(present))
        if distinct <= 1:
            found.append(Finding("constant_column", "warning", f"column {name!r} has one value: it carries nothing",
                                 columns=[name]))  # fmt: skip
            continue
        if texts.get(name):  # sentences differ per row by nature: read as words, not memorised
            continue
        whole = num is None or bool(np.all(present == np.round(present)))
        if distinct >= ID_SHARE * n and len(present) == n and whole:  # duplicated rows repeat their id
            found.append(
                Finding(
                    "id_column",
                    "warning",
                    f"column {name!r} is different in (almost) every row (an identifier?): a model can memorise it, "
                    "and new rows will carry unseen values; drop it unless it means something",
                    columns=[name],
                )
            )  # an id can leak too: rows numbered after sorting by label (the leakage check below)
        leak = _single_column_score(v, num, ds.y_train, val.get(name), ds.y_val, ds.task)
        if leak is not None and leak["score"] >= LEAK_SCORE and leak["score"] > leak["baseline"] + 0.1:
            found.append(
                Finding(
                    "leakage",
                    "warning",
                    f"column {name!r} alone predicts the validation target (score {leak['score']:.3f}, "
                    f"baseline {leak['baseline']:.3f}): is it known at prediction time, or derived from the label?",
                    columns=[name],
                    details=leak,
                )
            )
        if num is not None:
            found += _outliers(name, num, missing)
    return found


def _single_column_score(v, num, y, v_val, y_val, task: str) -> dict | None:
    """How well the column alone predicts the target on validation: classification accuracy of the
    majority class per value bin (32-128 quantile bins of a number, or the category), regression R² of the
    bin means; fitted on training, scored on validation."""
    if v_val is None or len(y_val) == 0:
        return None

    def bins(col, num_col, edges):
        if num_col is not None:
            return np.digitize(np.nan_to_num(num_col, nan=np.inf), edges)
        return np.asarray(col).astype(str)

    num_val = _numeric(np.asarray(v_val))
    bins_count = min(LEAK_BINS_MAX, max(LEAK_BINS, len(y) // 4))  # finer with more rows: a sorted id's
    edges = (  # bins that straddle a class boundary cost ~1/bins of the score, which LEAK_SCORE must allow
        np.unique(np.nanquantile(num, np.linspace(0, 1, bins_count + 1)[1:-1])) if num is not None else None
    )
    b_train, b_val = bins(v, num, edges), bins(v_val, num_val if num is not None else None, edges)
    keys, inverse = np.unique(b_train, return_inverse=True)
    lookup = {k: i for i, k in enumerate(keys.tolist())}
    index = np.array([lookup.get(k, -1) for k in b_val.tolist()])
    if task == "classification":
        table = np.zeros((len(keys), int(max(y.max(), y_val.max())) + 1))
        np.add.at(table, (inverse, y.astype(int)), 1)
        majority = np.bincount(y.astype(int)).argmax()
        guess = np.where(index >= 0, table.argmax(1)[np.maximum(index, 0)], majority)
        return {"score": float((guess == y_val).mean()), "baseline": float((y_val == majority).mean())}
    sums, counts = np.bincount(inverse, weights=y, minlength=len(keys)), np.bincount(inverse, minlength=len(keys))
    means = sums / np.maximum(counts, 1)
    guess = np.where(index >= 0, means[np.maximum(index, 0)], y.mean())
    total = float(((y_val - y_val.mean()) ** 2).sum()) or 1.0
    return {"score": 1.0 - float(((y_val - guess) ** 2).sum()) / total, "baseline": 0.0}


def _outliers(name: str, num: np.ndarray, missing: np.ndarray) -> list[Finding]:
    present = num[~missing]
    median = np.median(present)
    mad = np.median(np.abs(present - median)) * 1.4826
    if mad == 0:
        return []
    z = np.abs(num - median) / mad
    far = np.flatnonzero(np.nan_to_num(z) > OUTLIER_Z)
    if not len(far) or len(far) > OUTLIER_SHARE * len(present):  # that many are a second mode, not outliers
        return []
    return [
        Finding(
            "outliers",
            "info",
            f"column {name!r}: {len(far)} value(s) more than {OUTLIER_Z:g} robust deviations from the median "
            f"(e.g. {num[far[0]]:g} vs median {median:g}): typos, units, or a heavy tail worth a log transform",
            columns=[name],
            samples=far[:SHOWN].tolist(),
            details={"count": len(far), "median": float(median), "mad": float(mad)},
        )
    ]


# ---------------------------------------------------------------- label noise, sequences


def _features(ds: Dataset, x) -> np.ndarray | None:
    """A numeric matrix of samples for nearest neighbours, scaled by the training split's spread (None:
    text and mixed tables)."""
    if isinstance(x, dict) or ds.kind == "text":
        return None
    train = np.asarray(ds.x_train).reshape(ds.num_train, -1).astype("float32")
    x = np.asarray(x).reshape(len(x), -1).astype("float32")
    if ds.kind != "image":
        std = np.nanstd(train, axis=0)
        x = (x - np.nanmean(train, axis=0)) / np.where(std > 0, std, 1.0)
    return np.nan_to_num(x)


class _Neighbours:
    """Nearest neighbours among the training samples (projected on 32 principal directions when wider),
    queried for a sample of NOISE_SAMPLE training and validation rows: near-duplicates and label noise
    from one index. A pair is *near* when closer than NEAR_SHARE of the typical nearest-neighbour
    distance."""

    def __init__(self, train: np.ndarray, val: np.ndarray):
        from sklearn.neighbors import NearestNeighbors

        rng = np.random.default_rng(0)
        n = len(train)
        self.idx = np.sort(rng.choice(n, NOISE_SAMPLE, replace=False)) if n > NOISE_SAMPLE else np.arange(n)
        m = len(val)
        self.val_idx = np.sort(rng.choice(m, NOISE_SAMPLE, replace=False)) if m > NOISE_SAMPLE else np.arange(m)
        if train.shape[1] > 32:  # distances in 32 dimensions cost a fraction and keep what separates samples
            from sklearn.decomposition import PCA

            pca = PCA(min(32, len(self.idx)), random_state=0).fit(train[self.idx])
            train, val = pca.transform(train), pca.transform(val) if len(val) else val
        k = min(NOISE_NEIGHBOURS + 1, n)
        index = NearestNeighbors(n_neighbors=k).fit(train)
        self.dist, self.nbr = index.kneighbors(train[self.idx])  # column 0: the sample itself (or a copy)
        self.val_dist: np.ndarray | None = None
        self.val_nbr: np.ndarray | None = None
        if len(val):
            self.val_dist, self.val_nbr = index.kneighbors(val[self.val_idx], n_neighbors=1)
        nearest = self.dist[:, 1] if k > 1 else np.zeros(len(self.idx))
        self.near = NEAR_SHARE * float(np.median(nearest[nearest > 0])) if (nearest > 0).any() else 0.0


def _near_duplicates(nb: _Neighbours) -> list[Finding]:
    found = []
    if nb.dist.shape[1] > 1:
        close = np.flatnonzero((nb.dist[:, 1] > 0) & (nb.dist[:, 1] < nb.near))
        pairs = sorted({tuple(sorted((int(nb.idx[i]), int(nb.nbr[i, 1])))) for i in close})
        if pairs:
            found.append(
                Finding(
                    "duplicates",
                    "warning" if len(pairs) / len(nb.idx) >= 0.01 else "info",
                    f"{len(pairs)} pair(s) of training samples are near copies (closer than {NEAR_SHARE:.0%} of the "
                    f"typical nearest-neighbour distance; {len(nb.idx)} samples looked at): first pairs {pairs[:3]}",
                    samples=sorted({i for p in pairs for i in p})[:SHOWN],
                    details={"copies": len(pairs), "groups": [list(p) for p in pairs[:SHOWN]], "how": "near"},
                )
            )
    if nb.val_dist is not None and nb.val_nbr is not None:
        close = np.flatnonzero((nb.val_dist[:, 0] > 0) & (nb.val_dist[:, 0] < nb.near))
        if len(close):
            found.append(
                Finding(
                    "train_val_overlap",
                    "warning",
                    f"{len(close)} validation sample(s) are near copies of training samples ({len(nb.val_idx)} looked "
                    "at): the validation score overrates the model on new data",
                    samples=nb.val_nbr[close, 0][:SHOWN].tolist(),
                    val_samples=nb.val_idx[close][:SHOWN].tolist(),
                    details={"count": len(close), "how": "near"},
                )
            )
    return found


def _label_noise(nb: _Neighbours, y: np.ndarray) -> list[Finding]:
    """Samples whose label differs from all of their nearest neighbours' (of a sample of NOISE_SAMPLE)."""
    if len(y) < 20 or nb.nbr.shape[1] < 2:
        return []
    labels = y[nb.idx]
    disagree = (y[nb.nbr[:, 1:]] != labels[:, None]).all(axis=1)
    suspects = nb.idx[disagree]
    share = len(suspects) / len(nb.idx)
    if not len(suspects):
        return []
    k = nb.nbr.shape[1] - 1
    return [
        Finding(
            "label_noise",
            "warning" if share >= 0.05 else "info",
            f"{len(suspects)} of {len(nb.idx)} training samples ({share:.1%}) disagree with all {k} nearest "
            "neighbours' label: worth a look for wrong labels (or a class that needs more examples)",
            samples=suspects[:SHOWN].tolist(),
            details={"count": len(suspects), "looked_at": len(nb.idx), "neighbours": k},
        )
    ]


def _sequence_lengths(x) -> list[Finding]:
    arr = np.asarray(x)
    steps = arr.reshape(len(arr), arr.shape[1], -1)
    real = np.any(steps != 0, axis=2)
    lengths = np.where(real.any(axis=1), arr.shape[1] - np.argmax(real[:, ::-1], axis=1), 0)
    median = float(np.median(lengths))
    found = [
        Finding(
            "sequence_length",
            "info",
            f"lengths {int(lengths.min())}-{int(lengths.max())} steps, median {median:g}",
            details={"min": int(lengths.min()), "median": median, "max": int(lengths.max())},
        )
    ]
    if median and lengths.max() > 4 * median:
        long = np.flatnonzero(lengths > 4 * median)
        found[0].severity = "warning"
        found[0].message += (
            f"; {len(long)} sequence(s) longer than 4x the median make every batch pay for their padding: "
            "cap the length or bucket"
        )
        found[0].samples = long[:SHOWN].tolist()
    return found


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    return str(o)
