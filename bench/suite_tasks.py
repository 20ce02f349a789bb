"""The 18 tasks of bench/suite.py and bench/portfolio.py, and 2 held-out checks: fixed seeded splits.

Each task is raw inputs and raw labels as a user has them (arrays, lists of strings, DataFrames with
text columns and missing values), split once with seed 0 into train / val / test. Sizes are kept small
enough that a 60 s search on 2 CPU cores runs several trials:

- images: `mnist_test` (a stratified 4000 / 1000 / 2000 of the 10k test digits, as bench/quality.py),
  `digits` (scikit-learn's 1797 8x8 digits, stratified 60/20/20);
- text: `sms_spam` (stratified 60/20/20, as bench/quality.py), `sentiment_amazon`, `sentiment_imdb`,
  `sentiment_yelp` (one source file of sentiment_labelled_sentences each, 1000 sentences, 60/20/20);
- sequences: `ucr_ECG200`, `ucr_ArrowHead`, `ucr_GunPoint`, `ucr_OSULeaf`, `ucr_ACSF1`,
  `ucr_PickupGestureWiimoteZ`: the archive's TEST file is the test split, its TRAIN file is split
  stratified 80/20 into train / val. PickupGestureWiimoteZ has series of 29-361 steps: every split is
  padded at the end with zeros to the longest series of both files (361), which automl masks;
- tables: `bank_marketing` (stratified 60/20/20, as bench/quality.py), `wine_quality` (red + white,
  6497 wines with a `colour` text column, quality 3-9 as the class, stratified 60/20/20),
  `wine_quality_regression` (the same rows and split, quality as a number), `california_housing`
  (regression of median_house_value, 9 features of which one text column and one with missing values;
  a random 4000 / 1000 / 2000 of the 20640 districts), `breast_cancer` and `wine` (scikit-learn's,
  stratified 60/20/20).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality
from quality import DATA_DIR, MissingData

SEED = quality.SEED  # the fixed splits


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # automl's input kinds: image, text, sequence, tabular
    task: str  # classification or regression
    needs: tuple[str, ...]  # files under DATA_DIR/<folder>; none for scikit-learn's bundled sets
    load: Callable[[], dict]
    folder: str = ""
    held_out: bool = False  # not a suite task: never in a kind's list, nor chosen on (see HELD_OUT)


def split(x, y, n_val: int, n_test: int, n_train: int | None = None, stratify: bool = True, seed: int = SEED):
    """Train / val / test by sample counts, stratified on y unless `stratify=False`; x an array,
    a list or a DataFrame; `n_train` takes a (stratified) subsample first."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    strat = (lambda idx: y[idx]) if stratify else (lambda idx: None)
    idx = np.arange(len(y))
    if n_train is not None and n_train + n_val + n_test < len(y):
        idx, _ = train_test_split(idx, train_size=n_train + n_val + n_test, random_state=seed, stratify=strat(idx))
    rest, test_idx = train_test_split(idx, test_size=n_test, random_state=seed, stratify=strat(idx))
    train_idx, val_idx = train_test_split(rest, test_size=n_val, random_state=seed, stratify=strat(rest))
    take = (lambda i: x.iloc[i].reset_index(drop=True)) if hasattr(x, "iloc") else (lambda i: x[i])
    return {
        "train": (take(train_idx), y[train_idx]),
        "val": (take(val_idx), y[val_idx]),
        "test": (take(test_idx), y[test_idx]),
    }


def _sixty_twenty_twenty(x, y, stratify: bool = True) -> dict:
    n = len(y)
    return split(x, y, n_val=round(0.2 * n), n_test=round(0.2 * n), stratify=stratify)


# ---------------------------------------------------------------- readers


def read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """An aeon/sktime `.ts` file of univariate series: '#' comments and '@' headers, then after
    `@data` one series per line, comma-separated values, ':' and the class label."""
    series, labels, data = [], [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not data:
            if line.lower().startswith("@data"):
                data = True
            elif line.lower().startswith("@univariate") and line.split()[-1].lower() != "true":
                raise ValueError(f"{path}: only univariate series are read here")
            continue
        values, sep, label = line.rpartition(":")
        if not sep or ":" in values:
            raise ValueError(f"{path}: line {n} is not 'values:label' of one dimension")
        series.append(np.array([float(v) for v in values.split(",")], dtype="float32"))
        labels.append(label.strip())
    if not series:
        raise ValueError(f"{path}: no series after @data")
    return series, np.array(labels)


def pad(series: list[np.ndarray], steps: int) -> np.ndarray:
    """Series -> (n, steps), zeros after the end of each."""
    out = np.zeros((len(series), steps), dtype="float32")
    for i, s in enumerate(series):
        out[i, : len(s)] = s
    return out


def _ucr(name: str) -> Callable[[], dict]:
    def load() -> dict:
        from sklearn.model_selection import train_test_split

        d = DATA_DIR / f"ucr_{name}"
        train, y = read_ts(d / f"{name}_TRAIN.ts")
        test, y_test = read_ts(d / f"{name}_TEST.ts")
        steps = max(len(s) for s in train + test)  # the longest of both files (only Pickup varies)
        x, x_test = pad(train, steps), pad(test, steps)
        labels = sorted(set(y.tolist()), key=lambda v: (len(v), v))  # "1" < "2" < "10"
        y, y_test = np.array([labels.index(v) for v in y]), np.array([labels.index(v) for v in y_test])
        tr, va = train_test_split(np.arange(len(y)), test_size=0.2, random_state=SEED, stratify=y)
        return {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": (x_test, y_test)}

    return load


FILES = {"amazon": "amazon_cells_labelled.txt", "imdb": "imdb_labelled.txt", "yelp": "yelp_labelled.txt"}


def _sentiment(source: str) -> Callable[[], dict]:
    def load() -> dict:
        path = DATA_DIR / "sentiment_labelled_sentences" / FILES[source]
        texts, labels = [], []
        # split on newlines only: str.splitlines() also breaks at U+0085, which one IMDb sentence holds
        for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
            if not line.strip():
                continue
            text, sep, label = line.rpartition("\t")  # the last tab: quotes are text, not CSV quoting
            if not sep or label.strip() not in ("0", "1"):
                raise ValueError(f"{path}: line {n} is not 'sentence<TAB>0/1'")
            texts.append(text.strip())
            labels.append(int(label))
        return _sixty_twenty_twenty(np.array(texts, dtype=object), np.array(labels))

    return load


def _digits() -> dict:
    from sklearn.datasets import load_digits

    d = load_digits()
    return _sixty_twenty_twenty(d.images.astype("float32"), d.target.astype("int64"))  # values 0-16


def _sklearn_table(name: str, regression: bool = False) -> Callable[[], dict]:
    def load() -> dict:
        import sklearn.datasets

        d = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
        y = d.target.to_numpy().astype("float32" if regression else "int64")
        return _sixty_twenty_twenty(d.data, y, stratify=not regression)

    return load


def _wine_quality(regression: bool) -> Callable[[], dict]:
    def load() -> dict:
        import pandas as pd

        d = DATA_DIR / "wine_quality"
        parts = []
        for colour in ("red", "white"):
            df = pd.read_csv(d / f"winequality-{colour}.csv", sep=";")
            df.insert(0, "colour", colour)
            parts.append(df)
        df = pd.concat(parts, ignore_index=True)
        quality_ = df.pop("quality").to_numpy()
        splits = _sixty_twenty_twenty(df, quality_)  # stratified on quality for both tasks: the same rows
        cast = "float32" if regression else "int64"
        return {k: (x, y.astype(cast)) for k, (x, y) in splits.items()}

    return load


def _california_rows():
    """The 20,640 districts and their median house values."""
    import tarfile

    import pandas as pd

    with tarfile.open(DATA_DIR / "california_housing" / "housing.tgz") as archive:
        member = archive.extractfile("housing.csv")
        if member is None:
            raise ValueError("housing.tgz holds no housing.csv file")
        df = pd.read_csv(member)
    return df, df.pop("median_house_value").to_numpy().astype("float32")


def _california() -> dict:
    return split(*_california_rows(), n_train=4000, n_val=1000, n_test=2000, stratify=False)


def _california_full() -> dict:
    """Every district, 60/20/20: what a user with a larger table gets."""
    return _sixty_twenty_twenty(*_california_rows(), stratify=False)


def _quality(name: str) -> Callable[[], dict]:
    return lambda: quality.load_task(name)  # the very splits of bench/quality.py


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("mnist_test", "image", "classification", tuple(quality.NEEDS["mnist_test"]), _quality("mnist_test")),
        Task("digits", "image", "classification", (), _digits),
        Task("sms_spam", "text", "classification", tuple(quality.NEEDS["sms_spam"]), _quality("sms_spam")),
        *(
            Task(
                f"sentiment_{s}",
                "text",
                "classification",
                (FILES[s],),
                _sentiment(s),
                "sentiment_labelled_sentences",
            )
            for s in ("amazon", "imdb", "yelp")
        ),
        Task("ucr_ECG200", "sequence", "classification", tuple(quality.NEEDS["ucr_ECG200"]), _quality("ucr_ECG200")),
        *(
            Task(f"ucr_{n}", "sequence", "classification", (f"{n}_TRAIN.ts", f"{n}_TEST.ts"), _ucr(n))
            for n in ("ArrowHead", "GunPoint", "OSULeaf", "ACSF1", "PickupGestureWiimoteZ")
        ),
        Task(
            "bank_marketing",
            "tabular",
            "classification",
            tuple(quality.NEEDS["bank_marketing"]),
            _quality("bank_marketing"),
        ),
        Task(
            "wine_quality",
            "tabular",
            "classification",
            ("winequality-red.csv", "winequality-white.csv"),
            _wine_quality(False),
        ),
        Task(
            "wine_quality_regression",
            "tabular",
            "regression",
            ("winequality-red.csv", "winequality-white.csv"),
            _wine_quality(True),
            "wine_quality",
        ),
        Task("california_housing", "tabular", "regression", ("housing.tgz",), _california),
        Task("breast_cancer", "tabular", "classification", (), _sklearn_table("breast_cancer")),
        Task("wine", "tabular", "classification", (), _sklearn_table("wine")),
    )
}
# Held-out checks: scikit-learn's other bundled tables, run by name only (`--tasks diabetes,iris`):
# no kind's task list and no default includes them, so no portfolio or default is chosen on them.
# They check what a user with a new small table gets (diabetes: 442 patients, a noisy regression
# where a ridge regression is the practitioner's first try; iris: 150 flowers, 3 classes), what a
# user with a larger table gets (california_housing_full: all 20,640 districts), and a sequence of
# several features per step (digits_rows: each 8x8 digit read as 8 steps of 8 pixels).
TASKS.update(
    {
        "diabetes": Task("diabetes", "tabular", "regression", (), _sklearn_table("diabetes", True), held_out=True),
        "iris": Task("iris", "tabular", "classification", (), _sklearn_table("iris"), held_out=True),
        "digits_rows": Task("digits_rows", "sequence", "classification", (), _digits, held_out=True),
        "california_housing_full": Task(
            "california_housing_full",
            "tabular",
            "regression",
            ("housing.tgz",),
            _california_full,
            "california_housing",
            held_out=True,
        ),
    }
)
HELD_OUT = tuple(name for name, t in TASKS.items() if t.held_out)
SUITE = tuple(name for name, t in TASKS.items() if not t.held_out)  # the 18 suite tasks, in order
KINDS = ("image", "text", "sequence", "tabular")


def check_data(names) -> None:
    """Say which data files are missing and exit 2: a benchmark on absent data must not pretend."""
    need = [DATA_DIR / (TASKS[n].folder or n) / f for n in names for f in TASKS[n].needs]
    if need and not DATA_DIR.is_dir():
        print(
            f"error: data folder {DATA_DIR} is absent (expected ../shared/data next to the repository, "
            f"or AUTOML_BENCH_DATA=FOLDER); nothing was run",
            file=sys.stderr,
        )
        raise MissingData(2)
    missing = [str(p) for p in need if not p.is_file()]
    if missing:
        print(f"error: data files are missing: {', '.join(missing)}; nothing was run", file=sys.stderr)
        raise MissingData(2)


def load(name: str) -> dict:
    """The fixed splits of one task: {"train" | "val" | "test": (x, y)}."""
    return TASKS[name].load()


def parse_tasks(text: str) -> list[str]:
    """A comma-separated list of task names (or kinds: `image`, `tabular`...) -> task names, in order."""
    out: list[str] = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        names = [t.name for t in TASKS.values() if t.kind == word and not t.held_out] if word in KINDS else [word]
        for name in names:
            if name not in TASKS:
                raise ValueError(f"unknown task {name!r} (tasks: {', '.join(TASKS)}; or a kind: {', '.join(KINDS)})")
            if name not in out:
                out.append(name)
    return out


def describe(name: str, splits: dict) -> str:
    """'kind, task, train/val/test sizes[, classes]' for a table."""
    t = TASKS[name]
    sizes = "/".join(str(len(splits[k][1])) for k in ("train", "val", "test"))
    classes = f", {len(np.unique(splits['train'][1]))} classes" if t.task == "classification" else ""
    return f"{t.kind}, {t.task}, {sizes}{classes}"


if __name__ == "__main__":  # print every task's sizes: `.venv/bin/python bench/suite_tasks.py`
    check_data(list(TASKS))
    for name in TASKS:  # the held-out tasks last
        s = load(name)
        x = s["train"][0]
        shape = getattr(x, "shape", (len(x),))
        print(f"{name:26s} {describe(name, s)}; train x {tuple(shape)}")
