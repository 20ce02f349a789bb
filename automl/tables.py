"""Tables from files and frames: CSV (separator sniffed) and Parquet files, their columns checked and
converted (numbers to float32, text to strings, dates to their parts), the target column taken out.

What `readers.read_input` uses for every table; `make_dataset` (data.py) learns the column facts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .errors import DataError

SEPARATORS = ",;\t|"  # what a CSV file's columns may be separated by (sniffed)
EMPTY_PROBE_BYTES = 1 << 16  # a CSV whose first 64 KB are blank and that is no longer is empty
MISSING = ""  # what a missing categorical value becomes (its own category when training had any)
PARQUET = (".parquet", ".pq")
EXCEL = (".xlsx", ".xls", ".xlsm", ".ods")
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
WINDOWS = "cp1252"  # a file that is not UTF-8: Western European Windows text, as Excel saves "CSV" there


def decode_text(data: bytes, what: str) -> str:
    """Bytes of a text file as text: UTF-8 (a byte-order mark dropped; UTF-16 by its mark), else
    Windows' cp1252; one error line when neither reads it (a binary file, another code page)."""
    try:
        return data.decode("utf-16" if data.startswith(UTF16_BOMS) else "utf-8-sig")
    except UnicodeDecodeError as exc:
        try:
            return data.decode(WINDOWS)
        except UnicodeDecodeError:
            raise DataError(f"{what}: not UTF-8 text ({exc.reason} at byte {exc.start}), nor Windows cp1252") from None


def load_table(path: str | Path, target: str | None):
    """A CSV (separator sniffed: `,` or `;` ...) with a header, or a Parquet file; returns (feature
    DataFrame, target array).

    Text columns are categorical (a lone column of sentences is a text task: `read_input`), empty cells
    are missing values; `make_dataset` checks the rest.
    """
    path = Path(path)
    if not target:
        raise DataError(f"{path}: --target COLUMN is required for a table file")
    df = read_frame(path)
    if target not in df.columns:
        raise DataError(f"{path}: no column {target!r} (columns: {', '.join(map(str, df.columns))})")
    return df.drop(columns=[target]), target_column(df[target], f"{path}: target column {target!r}")


def read_frame(path: Path):
    """A table file as a DataFrame: Parquet (`.parquet`, `.pq`) as written, anything else as CSV.
    Excel files get an error that says to save them as CSV (no Excel reader is installed)."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix in EXCEL:
        raise DataError(f"{path}: Excel files are not read; save the sheet as CSV (or Parquet) and pass that")
    if suffix not in PARQUET:
        return read_csv_frame(path)
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow's errors have no common base but Exception
        raise DataError(f"{path}: cannot read as Parquet: {type(exc).__name__}: {exc}") from None
    if df.empty:
        raise DataError(f"{path}: the file has no rows")
    return df


def read_csv_frame(path: Path):
    """A CSV file with a header and at least one row, as a DataFrame (separator sniffed). UTF-8 (or
    UTF-16 with its byte-order mark); a file that is not UTF-8 is read as Windows cp1252, which Excel
    writes on Western European Windows (before, such a file was refused)."""
    import pandas as pd

    try:
        with path.open("rb") as f:  # the first bytes only: pandas reads the file once
            head = f.read(EMPTY_PROBE_BYTES)
        if not head.strip() and path.stat().st_size <= EMPTY_PROBE_BYTES:
            raise DataError(f"{path}: the file is empty")
        encoding = "utf-16" if head.startswith(UTF16_BOMS) else "utf-8"  # Excel's "Unicode text" is UTF-16
        try:
            df = pd.read_csv(path, sep=_separator(head, encoding), encoding=encoding)
        except UnicodeDecodeError:
            if encoding != "utf-8":
                raise
            df = pd.read_csv(path, sep=_separator(head, WINDOWS), encoding=WINDOWS)
    except (OSError, csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from None
    if df.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    return _decimal_commas(_without_written_index(df))


DECIMAL_COMMA = r"[+-]?(\d{1,3}(\.\d{3})+|\d*),\d+([eE][+-]?\d+)?|[+-]?(\d{1,3}(\.\d{3})+|\d+)"


def _decimal_commas(df):
    """Columns of numbers written with a decimal comma (`3,5`, `1.234,5`) as numbers. Why: Excel and
    most spreadsheet tools in continental Europe save CSV files so (with `;` between columns); read as
    text, every measurement became a category of one value (the wine table: 13 categorical columns).
    A column converts only when every value is such a number and one at least has a comma."""
    import pandas as pd

    for name in df.columns:
        s = df[name]
        if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            continue
        text = s.dropna().astype(str).str.strip()
        if text.empty or not text.str.contains(",", regex=False).any() or not text.str.fullmatch(DECIMAL_COMMA).all():
            continue
        plain = s.astype("string").str.strip().str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        df[name] = pd.to_numeric(plain).astype("float64")
    return df


def _without_written_index(df):
    """The frame without the row index that `DataFrame.to_csv` writes by default: a first column with
    an empty header (pandas names it "Unnamed: 0") and a distinct whole number per row. Why: it is row
    order, not data; a file sorted by label (or split by row number) lets every model read the label
    from it, and new rows carry numbers it never saw. `pd.read_csv(index_col=0)` would drop it too."""
    import pandas as pd

    first = df.columns[0]
    if df.shape[1] < 2 or not str(first).startswith("Unnamed: 0"):
        return df
    s = df[first]
    if not pd.api.types.is_integer_dtype(s.dtype) or not s.is_unique:
        return df
    return df.drop(columns=[first])


def _separator(head: bytes, encoding: str = "utf-8") -> str:
    """The separator of a CSV from its first bytes: one of SEPARATORS, `,` when there is one column.
    Why not pandas' own sniffing (`sep=None`): on one column of sentences it picks a letter."""
    sample = head.decode(encoding, errors="replace")
    if len(head) == EMPTY_PROBE_BYTES and "\n" in sample:
        sample = sample[: sample.rfind("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=SEPARATORS).delimiter
    except csv.Error:  # no separator is consistent: one column
        return ","


def read_table(df, what: str, predicting: bool = False):
    """Check a DataFrame's columns; numeric -> float32 (NaN = missing), others -> str ('' = missing).
    `predicting`: new rows for a trained model, where a column may be all missing (one row with a
    hole): it comes back as NaN, which the model's columns read as missing, whatever their kind."""
    import pandas as pd

    if df.shape[1] == 0:
        raise DataError(f"{what}: the table has no feature columns")
    if len(df) == 0:
        raise DataError(f"{what}: x is empty (the table has no rows)")
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{what}: column name {dup!r} occurs twice")
    df = date_parts(df)
    names = [str(c) for c in df.columns]
    out = {}
    for col, name in zip(df.columns, names):
        s = df[col]
        if s.isna().all():
            if predicting:
                out[name] = np.full(len(s), np.nan, dtype="float32")
                continue
            raise DataError(f"{what}: column {name!r} has no values (all missing)")
        if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
            if pd.api.types.is_complex_dtype(s.dtype):
                raise DataError(f"{what}: column {name!r} holds complex numbers")
            values = s.to_numpy(dtype="float32", na_value=np.nan)
            if np.isinf(values).any():
                raise DataError(f"{what}: column {name!r} has infinite values (row {int(np.argmax(np.isinf(values)))})")
            out[name] = values
        elif pd.api.types.is_timedelta64_dtype(s.dtype):  # a duration: its length in seconds
            out[name] = s.dt.total_seconds().to_numpy(dtype="float32", na_value=np.nan)
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):  # date_parts missed it: all missing
            out[name] = np.full(len(s), np.nan, dtype="float32")
        else:  # str, object, category: categorical
            out[name] = np.array([MISSING if is_missing(v) else str(v) for v in s], dtype=object)
    return pd.DataFrame(out)


ISO_DATE = r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?"
DATE_PARTS = ("year", "month", "day", "weekday")  # and hour, minute when the times are not all midnight


def date_parts(df):
    """Date columns (datetime dtype, or strings that are all ISO dates: 2024-03-01, 2024-03-01 14:30)
    -> numeric columns `NAME.year`, `.month`, `.day`, `.weekday` (Monday 0), and `.hour`, `.minute`
    when times are given, in the date column's place. Why: as strings, each date is its own category,
    memorised and useless on new rows; its parts carry the seasons, weekdays and trend."""
    import pandas as pd

    dates = {c for c in df.columns if _is_dates(df[c])}
    if not dates:
        return df
    parts = {}
    for col in df.columns:
        s = df[col]
        if col not in dates:
            parts[col] = s
            continue
        when = pd.to_datetime(s, format="ISO8601", utc=True) if not pd.api.types.is_datetime64_any_dtype(s) else s
        fields = [
            *DATE_PARTS,
            *(("hour", "minute") if (when.dt.hour.fillna(0) + when.dt.minute.fillna(0)).any() else ()),
        ]
        for field in fields:
            parts[f"{col}.{field}"] = getattr(when.dt, "day_of_week" if field == "weekday" else field).astype("float32")
    return pd.DataFrame(parts, index=df.index)


def _is_dates(s) -> bool:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return bool(s.notna().any())
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return False
    values = s.dropna().astype(str)
    return len(values) > 0 and bool(values.str.fullmatch(ISO_DATE).all())


def is_missing(v) -> bool:
    import pandas as pd

    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, (float, np.floating)) and v != v)


def target_column(s, what: str) -> np.ndarray:
    missing = s.isna()
    if missing.any():
        raise DataError(f"{what} has {int(missing.sum())} missing values (first at row {int(np.argmax(missing))})")
    return s.to_numpy()
