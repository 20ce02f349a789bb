"""Inputs of every kind: built-in sets, arrays, CSV, npz, DataFrames, tf.data, image and text folders,
texts, ragged and padded sequences; every bad input gets a clear error before any trial runs."""

import numpy as np
import pandas as pd
import pytest

from automl.data import DataError, encode_targets, load_data, make_dataset, model_inputs


def test_digits_are_images_with_raw_pixels_and_a_scale():
    ds = load_data("digits", seed=0)
    assert ds.kind == "image" and ds.task == "classification" and ds.input_shape == (8, 8, 1)
    assert ds.num_classes == 10 and len(ds.x_train) + len(ds.x_val) == 1797
    assert ds.x_train.max() == 16 and ds.pixel_scale == pytest.approx(1 / 16)
    # stratified split keeps every class in validation
    assert set(np.unique(ds.y_val)) == set(range(10))


def test_diabetes_is_regression_with_target_scaling():
    ds = load_data("diabetes")
    assert ds.task == "regression" and ds.kind == "tabular"
    assert ds.target_mean == pytest.approx(ds.y_train.mean()) and ds.target_std > 1
    assert ds.feature_mean.shape == (10,)


def test_string_labels_are_encoded_and_kept():
    x = np.random.default_rng(0).normal(size=(40, 3))
    y = np.array(["cat", "dog"] * 20)
    ds = make_dataset(x, y, validation_split=0.25)
    assert ds.class_names == ["cat", "dog"] and set(np.unique(ds.y_train)) == {0, 1}


def test_csv_with_semicolons_and_target(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a;b;label\n" + "".join(f"{i};{i * 2};{i % 2}\n" for i in range(20)))
    ds = load_data(str(path), target="label")
    assert ds.input_shape == (2,) and ds.task == "classification" and ds.num_classes == 2


def test_npz_with_validation_arrays(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x=rng.normal(size=(30, 4)),
        y=rng.normal(size=30),
        x_val=rng.normal(size=(10, 4)),
        y_val=rng.normal(size=10),
    )
    ds = load_data(str(path))
    assert len(ds.x_val) == 10 and ds.task == "regression"


@pytest.mark.parametrize(
    "x, y, kwargs, message",
    [
        (np.zeros((10, 3)), np.zeros(9, int), {}, "x has 10 samples but y has 9"),
        (np.zeros((0, 3)), np.zeros(0, int), {}, "x is empty"),
        (np.array([[1.0, np.nan]] * 10), np.arange(10) % 2, {}, "NaN"),
        (np.zeros((10, 3)), np.zeros(10, int), {}, "at least 2 classes"),
        (np.zeros((10, 3)), np.arange(10) % 2, {"validation_split": 1.5}, "validation_split"),
        (np.zeros((3, 3)), np.arange(3) % 2, {"validation_split": 0.1}, "too few"),
        (np.zeros((10, 3, 3, 3, 3)), np.arange(10) % 2, {}, "expected (samples, features)"),
        (
            np.zeros((10, 3)),
            np.arange(10) % 2,
            {"validation_data": (np.zeros((4, 3)), np.array([0, 1, 2, 7]))},
            "validation labels [2, 7] do not occur",
        ),
        (
            np.zeros((10, 3)),
            np.arange(10) % 2,
            {"validation_data": (np.zeros((4, 5)), np.array([0, 1, 0, 1]))},
            "validation data: x has shape (5,) per sample",
        ),
        ([["a", "b"]] * 10, np.arange(10) % 2, {}, "x must be numeric"),
        (np.zeros((10, 3)), np.arange(10) % 2, {"task": "ranking"}, "task must be one of"),
    ],
)
def test_bad_arrays_get_clear_errors(x, y, kwargs, message):
    with pytest.raises(DataError) as info:
        make_dataset(x, y, **kwargs)
    assert message in str(info.value)


def test_bad_files_get_clear_errors(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label\n1,x,0\n2,y,1\n")
    with pytest.raises(DataError, match="no column 'target'"):
        load_data(str(csv), target="target")
    csv.write_text("a,when,label\n1,2024-01-01,0\n2,2024-01-02,1\n3,,\n")
    with pytest.raises(DataError, match="target column 'label' has 1 missing values"):
        load_data(str(csv), target="label")
    with pytest.raises(DataError, match="--target COLUMN is required"):
        load_data(str(csv))
    with pytest.raises(DataError, match="not a built-in data set"):
        load_data(str(tmp_path / "missing.csv"))
    npz = tmp_path / "d.npz"
    np.savez(npz, inputs=np.zeros((3, 2)))
    with pytest.raises(DataError, match="no array 'x'"):
        load_data(str(npz))


# ---------------------------------------------------------------- tables


def _frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "size": rng.normal(10, 2, n),
            "colour": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "rooms": rng.integers(1, 5, n).astype(float),
            "label": np.arange(n) % 2,
        }
    )
    df.loc[[1, 5, 9], "size"] = np.nan
    df.loc[[2, 3], "colour"] = None
    return df


def test_dataframe_columns_are_detected_with_missing_values_and_learnt_from_the_training_split():
    df = _frame()
    assert str(df["colour"].dtype) == "str"  # pandas 3 text dtype, not object
    ds = make_dataset(df, "label", validation_split=0.25, seed=0)
    assert ds.kind == "tabular" and ds.task == "classification" and ds.input_shape == (3,)
    cols = {c.name: c for c in ds.columns}
    assert [c.kind for c in ds.columns] == ["numeric", "categorical", "numeric"]
    train_size = ds.x_train["size"]
    assert cols["size"].missing == bool(np.isnan(train_size).any())
    assert cols["size"].mean == pytest.approx(np.nanmean(train_size), rel=1e-5)
    assert cols["size"].std == pytest.approx(np.nanstd(train_size), rel=1e-4)
    assert not cols["rooms"].missing
    # vocabulary: training values, most frequent first; a missing value is the category ""
    values, counts = np.unique(ds.x_train["colour"], return_counts=True)
    assert sorted(cols["colour"].vocabulary) == sorted(values.tolist())
    assert cols["colour"].vocabulary[0] == values[counts.argmax()]
    assert ds.x_train["colour"].dtype == object and ds.x_train["size"].dtype == np.float32
    assert len(ds.x_train["size"]) == ds.num_train == 30 and ds.num_val == 10
    assert "2 numeric + 1 categorical columns" in ds.summary() and ds.describe()["columns"]


def test_a_numeric_dataframe_without_gaps_is_a_plain_matrix_and_new_frames_are_reordered():
    df = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) ** 2, "y": np.arange(20) % 2})
    ds = make_dataset(df.drop(columns="y"), df["y"], seed=0)
    assert ds.columns is None and ds.x_train.shape == (16, 2) and ds.feature_mean.shape == (2,)
    new = pd.DataFrame({"b": [4.0], "extra": ["ignored"], "a": [2.0]})
    np.testing.assert_array_equal(model_inputs(ds, new), [[2.0, 4.0]])
    with pytest.raises(DataError, match="no column 'b'"):
        model_inputs(ds, pd.DataFrame({"a": [1.0]}))


def test_new_rows_for_a_column_model_are_checked_and_converted():
    ds = make_dataset(_frame(), "label", seed=0)
    rows = model_inputs(ds, pd.DataFrame({"rooms": [2, None], "colour": ["red", None], "size": [9.5, 11.0]}))
    assert list(rows) == ["size", "colour", "rooms"]
    assert rows["colour"].tolist() == ["red", ""] and np.isnan(rows["rooms"][1])
    with pytest.raises(DataError, match="no column 'colour'"):
        model_inputs(ds, {"size": [1.0], "rooms": [1.0]})
    with pytest.raises(DataError, match="column 'size' is numeric in the training data but holds text"):
        model_inputs(ds, {"size": ["big"], "colour": ["red"], "rooms": [1.0]})
    assert encode_targets(ds, [1, 0, 1]).tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"labels \[7\] are not among the trained classes"):
        encode_targets(ds, [7])


def test_csv_with_categorical_columns_and_missing_values(tmp_path):
    path = tmp_path / "houses.csv"
    _frame().to_csv(path, index=False)
    assert ",," in path.read_text()  # missing cells are empty
    ds = load_data(str(path), target="label", seed=0)
    assert ds.name == "houses.csv:label" and [c.name for c in ds.columns] == ["size", "colour", "rooms"]
    assert ds.task == "classification" and ds.num_classes == 2


def test_a_parquet_file_is_read_as_its_csv_twin_and_an_excel_file_gets_a_hint(tmp_path):
    """Parquet keeps dtypes (a datetime stays one, numbers stay numbers): the same data set as from the
    CSV file, fingerprint included. An Excel file is refused with what to do instead."""
    table = _frame()
    table.to_csv(tmp_path / "houses.csv", index=False)
    table.to_parquet(tmp_path / "houses.parquet", index=False)
    from_csv = load_data(str(tmp_path / "houses.csv"), target="label", seed=0)
    from_parquet = load_data(str(tmp_path / "houses.parquet"), target="label", seed=0)
    assert [(c.name, c.kind) for c in from_parquet.columns] == [(c.name, c.kind) for c in from_csv.columns]
    assert from_parquet.fingerprint() == from_csv.fingerprint()
    (tmp_path / "houses.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="houses.xlsx: Excel files are not read; save the sheet as CSV"):
        load_data(str(tmp_path / "houses.xlsx"), target="label")


def test_whole_number_targets_with_many_values_are_regressions(tmp_path):
    """Scores, prices and counts are integers to pandas: with many values they are a regression (as
    hundreds of classes they failed: validation values unseen in training). Class numbers and few
    whole-number grades stay classes; `task=` decides either way."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, as_frame=True)
    table = x.assign(progression=y.astype(int))  # 214 distinct scores in 442 rows
    table.to_csv(tmp_path / "scores.csv", index=False)
    ds = load_data(str(tmp_path / "scores.csv"), target="progression", seed=0)
    assert ds.task == "regression" and ds.target_std > 10
    with pytest.raises(DataError, match=r"do not occur in the training labels \(numbers to predict.*--task regression"):
        load_data(str(tmp_path / "scores.csv"), target="progression", seed=0, task="classification")
    grades = table.assign(progression=(y // 40).astype(int))  # 7 grades: classes
    grades.to_csv(tmp_path / "grades.csv", index=False)
    assert load_data(str(tmp_path / "grades.csv"), target="progression", seed=0).task == "classification"
    as_numbers = load_data(str(tmp_path / "grades.csv"), target="progression", seed=0, task="regression")
    assert as_numbers.task == "regression"
    grades.astype({"progression": float}).to_csv(tmp_path / "floats.csv", index=False)  # written 3.0, 4.0
    assert "3.0" in (tmp_path / "floats.csv").read_text()
    assert load_data(str(tmp_path / "floats.csv"), target="progression", seed=0).task == "classification"
    assert make_dataset(x.to_numpy(), y.to_numpy() + 0.5, validation_split=0.2).task == "regression"
    digits = load_data("digits", seed=0)  # ten class numbers in 1797 rows
    assert digits.task == "classification" and digits.num_classes == 10


def test_csv_and_text_files_saved_by_windows_programs_are_read(tmp_path):
    """Excel on Western European Windows saves "CSV" as cp1252, "CSV UTF-8" with a byte-order mark and
    "Unicode text" as UTF-16: each reads as the UTF-8 file does (a cp1252 file was refused before),
    and so do text files of one sample per line."""
    table = pd.DataFrame({"ville": ["Montréal", "Québec", "Genève", "Zürich"] * 10, "label": ["oui", "non"] * 20})
    table.to_csv(tmp_path / "utf8.csv", index=False)
    plain = load_data(str(tmp_path / "utf8.csv"), target="label", seed=0)
    for name, encoding, sep in (("win.csv", "cp1252", ";"), ("bom.csv", "utf-8-sig", ","), ("u16.csv", "utf-16", "\t")):
        table.to_csv(tmp_path / name, index=False, encoding=encoding, sep=sep)
        ds = load_data(str(tmp_path / name), target="label", seed=0)
        assert ds.fingerprint() == plain.fingerprint(), name
        assert sorted(set(ds.x_train["ville"])) == ["Genève", "Montréal", "Québec", "Zürich"]
    (tmp_path / "texts").mkdir()  # one file per class, a sample per line
    (tmp_path / "texts" / "fr.txt").write_bytes("très bien\nça va\n".encode("cp1252") * 5)
    (tmp_path / "texts" / "en.txt").write_text("very good\nall right\n" * 5)
    texts = load_data(str(tmp_path / "texts"), seed=0)
    assert "très bien" in set(texts.x_train) | set(texts.x_val)


def test_numbers_with_decimal_commas_are_numbers(tmp_path):
    """Spreadsheets in continental Europe save CSV with `;` between columns and a decimal comma: the
    same data set as the English file (it was 13 categorical columns of one value a row). Thousands
    points, a gap and a regression target convert too; text with commas stays text."""
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame
    wine.to_csv(tmp_path / "en.csv", index=False)
    wine.to_csv(tmp_path / "de.csv", index=False, sep=";", decimal=",")
    english = load_data(str(tmp_path / "en.csv"), target="target", seed=0)
    german = load_data(str(tmp_path / "de.csv"), target="target", seed=0)
    assert german.columns is None and german.input_shape == (13,)
    assert german.fingerprint() == english.fingerprint()
    rows = ["preis;notiz;wert", "1.234,5;rot, groß;0,25", ";blau, klein;1,5", "-2,0;grün;3"] * 10
    (tmp_path / "mixed.csv").write_text("\n".join(rows[:1] + [r for r in rows if r != rows[0]]) + "\n")
    mixed = load_data(str(tmp_path / "mixed.csv"), target="wert", seed=0)
    kinds = {c.name: c.kind for c in mixed.columns}
    assert kinds == {"preis": "numeric", "notiz": "categorical"} and mixed.task == "regression"
    assert next(c for c in mixed.columns if c.name == "preis").missing
    values = mixed.x_train["preis"]
    assert set(values[~np.isnan(values)].tolist()) == {1234.5, -2.0} and set(mixed.y_train.tolist()) == {0.25, 1.5, 3.0}


def test_the_row_index_pandas_writes_is_not_read_as_a_column(tmp_path):
    """`df.to_csv(path)` writes the row index as a first column without a header. Sorted by label (or
    shuffled by a split), that number tells the label or nothing: it is dropped in training and in
    new rows, so the data set is the one written without it. A named first column stays."""
    from automl.readers import read_samples_file

    table = _frame().sort_values("label").reset_index(drop=True)
    table.to_csv(tmp_path / "plain.csv", index=False)
    table.to_csv(tmp_path / "indexed.csv")  # pandas' default: index=True
    assert (tmp_path / "indexed.csv").read_text().startswith(",size,")
    plain = load_data(str(tmp_path / "plain.csv"), target="label", seed=0)
    indexed = load_data(str(tmp_path / "indexed.csv"), target="label", seed=0)
    assert [c.name for c in indexed.columns] == ["size", "colour", "rooms"]
    assert indexed.fingerprint() == plain.fingerprint()
    table.sample(frac=1.0, random_state=0).drop(columns=["label"]).to_csv(tmp_path / "new.csv")
    assert list(read_samples_file(tmp_path / "new.csv", "tabular").columns) == ["size", "colour", "rooms"]
    table.rename_axis("row").to_csv(tmp_path / "named.csv")  # a header the user gave: data
    named = load_data(str(tmp_path / "named.csv"), target="label", seed=0)
    assert [c.name for c in named.columns] == ["row", "size", "colour", "rooms"]


def test_date_columns_become_their_parts_in_training_and_in_new_rows(tmp_path):
    """A datetime column, or strings that are all ISO dates, becomes NAME.year/.month/.day/.weekday
    (and .hour/.minute with times); a duration its seconds. New rows are read the same way."""
    table = pd.DataFrame(
        {
            "sold": ["2024-03-01", "2024-03-02", None, "2024-12-25", "2025-01-06", "2025-01-07"] * 3,
            "at": pd.to_datetime(["2024-01-01 08:30", "2024-01-02 17:45", "2024-01-03 00:00"] * 6),
            "took": pd.to_timedelta(["1 min", "2 min", "90 s"] * 6),
            "label": [0, 1] * 9,
        }
    )
    path = tmp_path / "sales.csv"
    table.drop(columns=["at", "took"]).to_csv(path, index=False)
    ds = load_data(str(path), target="label", seed=0)
    assert [c.name for c in ds.columns] == ["sold.year", "sold.month", "sold.day", "sold.weekday"]
    assert all(c.kind == "numeric" and c.missing for c in ds.columns)  # the missing date: NaN + a flag
    ds = make_dataset(table, "label", seed=0)
    names = ["sold.year", "sold.month", "sold.day", "sold.weekday", "at.year", "at.month", "at.day", "at.weekday"]
    assert [c.name for c in ds.columns] == [*names, "at.hour", "at.minute", "took"]
    new = model_inputs(ds, table.drop(columns="label").head(2))
    assert new["sold.weekday"].tolist() == [4.0, 5.0] and new["at.hour"].tolist() == [8.0, 17.0]
    assert new["at.minute"].tolist() == [30.0, 45.0] and new["took"].tolist() == [60.0, 120.0]


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"a": [np.nan] * 4, "b": [1.0, 2, 3, 4], "y": [0, 1, 0, 1]}), "column 'a' has no values"),
        (pd.DataFrame({"a": [1.0, np.inf, 3, 4], "y": [0, 1, 0, 1]}), "column 'a' has infinite values (row 1)"),
        (pd.DataFrame({"y": [0, 1, 0, 1]}), "the table has no feature columns"),
        (pd.DataFrame({"a": [1.0, 2, 3, 4], "y": [0, 1, None, 1]}), "target column 'y' has 1 missing values"),
    ],
)
def test_bad_dataframes_get_clear_errors(frame, message):
    with pytest.raises(DataError) as info:
        make_dataset(frame, "y")
    assert message in str(info.value)
    with pytest.raises(DataError, match="no column 'target'"):
        make_dataset(frame, "target")


# ---------------------------------------------------------------- tf.data


def test_tf_data_elements_batches_texts_and_feature_dicts_are_read():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    y = np.arange(30) % 3
    elements = make_dataset(tf.data.Dataset.from_tensor_slices((x, y)), seed=0)
    batches = make_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(7), seed=0)
    arrays = make_dataset(x, y, seed=0)
    assert elements.fingerprint() == batches.fingerprint() == arrays.fingerprint()
    texts = tf.data.Dataset.from_tensor_slices((["good", "bad", "fine", "awful"] * 5, ["p", "n"] * 10)).batch(4)
    ds = make_dataset(texts, seed=0)
    assert ds.kind == "text" and ds.class_names == ["n", "p"] and isinstance(ds.x_train[0], str)
    table = tf.data.Dataset.from_tensor_slices(({"rooms": np.arange(20.0), "city": ["a", "b"] * 10}, np.arange(20) % 2))
    ds = make_dataset(table, seed=0)
    assert ds.kind == "tabular" and [c.kind for c in ds.columns] == ["numeric", "categorical"]
    ragged = tf.data.Dataset.from_generator(
        lambda: ((np.ones((n, 2), "float32"), n % 2) for n in range(1, 9)),
        output_signature=(tf.TensorSpec((None, 2)), tf.TensorSpec((), tf.int64)),
    )
    ds = make_dataset(ragged.padded_batch(3), kind="sequence", seed=0)
    assert ds.input_shape == (8, 2) and ds.masked


def test_bad_tf_data_gets_clear_errors():
    import tensorflow as tf

    pairs = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2)), [0, 1, 0, 1]))
    with pytest.raises(DataError, match="holds its own labels"):
        make_dataset(pairs, [0, 1, 0, 1])
    with pytest.raises(DataError, match="infinite"):
        make_dataset(pairs.repeat())
    with pytest.raises(DataError, match=r"must be \(x, y\) pairs"):
        make_dataset(tf.data.Dataset.from_tensor_slices(np.zeros((4, 2))))
    with pytest.raises(DataError, match="x is empty"):
        make_dataset(pairs.take(0))
    with pytest.raises(DataError, match="not one-hot rows|labels have shape"):
        make_dataset(tf.data.Dataset.from_tensor_slices((np.zeros((4, 2)), np.eye(4)[:, :2])).batch(2))


# ---------------------------------------------------------------- image folders


def _png(path, h, w, c=3, value=0):
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((h, w, c), value, np.uint8)
    pixels[0, 0] = 255
    path.write_bytes(tf.io.encode_png(pixels).numpy())


def test_image_folder_per_class(tmp_path):
    for i in range(4):
        _png(tmp_path / "imgs" / "cat" / f"{i}.png", 6, 5, value=10 * i)
        _png(tmp_path / "imgs" / "dog" / f"{i}.png", 6, 5, c=1, value=200)  # grayscale joins as RGB
    ds = load_data(str(tmp_path / "imgs"), validation_split=0.25, seed=0)
    assert ds.kind == "image" and ds.input_shape == (6, 5, 3) and ds.class_names == ["cat", "dog"]
    assert ds.pixel_scale == pytest.approx(1 / 255) and ds.name == "imgs"
    _png(tmp_path / "imgs" / "dog" / "big.png", 12, 10)
    with pytest.raises(DataError, match=r"big.png: image is 10x12 but .* is 5x6; pass image_size"):
        make_dataset(tmp_path / "imgs")
    resized = make_dataset(tmp_path / "imgs", image_size=(4, 4), seed=0)
    assert resized.input_shape == (4, 4, 3) and resized.num_train + resized.num_val == 9
    (tmp_path / "imgs" / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: cannot decode as an image"):
        make_dataset(tmp_path / "imgs", image_size=(4, 4))
    (tmp_path / "imgs" / "bird").mkdir()
    with pytest.raises(DataError, match="bird: class folder is empty"):
        make_dataset(tmp_path / "imgs")
    with pytest.raises(DataError, match="labels of .* are its class folder names"):
        make_dataset(tmp_path / "imgs", ["cat"])


# ---------------------------------------------------------------- texts


def test_texts_from_lists_arrays_bytes_and_folders(tmp_path):
    texts = ["good film", "bad plot", "great cast", "awful"] * 3
    labels = ["pos", "neg", "pos", "neg"] * 3
    from_list = make_dataset(texts, labels, seed=0)
    assert from_list.kind == "text" and from_list.input_shape == () and from_list.x_train.dtype == object
    assert make_dataset(np.array(texts), labels, seed=0).fingerprint() == from_list.fingerprint()
    assert make_dataset([t.encode() for t in texts], labels, seed=0).fingerprint() == from_list.fingerprint()
    assert (
        make_dataset(texts, labels, seed=0).fingerprint()
        != make_dataset([*texts[:-1], "x"], labels, seed=0).fingerprint()
    )
    for i, (t, lab) in enumerate(zip(texts, labels)):  # a folder per class, a file per sample
        (tmp_path / "reviews" / lab).mkdir(parents=True, exist_ok=True)
        (tmp_path / "reviews" / lab / f"{i}.txt").write_text(t)
    ds = load_data(str(tmp_path / "reviews"), seed=0)
    assert ds.kind == "text" and ds.class_names == ["neg", "pos"] and ds.num_train + ds.num_val == 12
    (tmp_path / "lines").mkdir()  # a .txt file per class, a sample per line
    (tmp_path / "lines" / "spam.txt").write_text("win money\n\nfree prize now\ncheap pills\n")
    (tmp_path / "lines" / "ham.txt").write_text("see you at lunch\nminutes attached\nthanks!\n")
    ds = make_dataset(tmp_path / "lines", validation_split=0.34, seed=0)
    assert sorted(ds.x_train.tolist() + ds.x_val.tolist()) == sorted(
        ["win money", "free prize now", "cheap pills", "see you at lunch", "minutes attached", "thanks!"]
    )


def test_a_csv_of_sentences_and_labels_is_a_text_task(tmp_path):
    """A CSV of `text,label` (how text data sets usually ship) is read as texts, its one column not a
    category per row; a short one-column category stays a table; a text space reads a one-column CSV."""
    sentences = ["great product, works well", "broke at once; awful", "", "love it, very happy"] * 5
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review": sentences, "label": ["pos", "neg", "neg", "pos"] * 5}).to_csv(path, index=False)
    ds = load_data(str(path), target="label", seed=0)
    assert ds.kind == "text" and ds.class_names == ["neg", "pos"]
    assert sorted(ds.x_train.tolist() + ds.x_val.tolist()) == sorted(sentences)  # "" for the empty cell
    assert list(model_inputs(ds, pd.DataFrame({"review": ["works well"]}))) == ["works well"]
    # one column of sentences without a separator in the header: still one column, not split on a letter
    lone = tmp_path / "lone.csv"
    pd.DataFrame({"review": sentences}).to_csv(lone, index=False)
    from automl.tables import read_frame

    assert list(read_frame(lone).columns) == ["review"]
    colours = tmp_path / "colours.csv"
    pd.DataFrame({"colour": ["red", "blue"] * 10, "label": [0, 1] * 10}).to_csv(colours, index=False)
    assert load_data(str(colours), target="label").kind == "tabular"
    assert load_data(str(colours), target="label", kind="text").kind == "text"  # what a text space asks for
    # beside other columns: sentences become a text column, a multi-word category stays a category
    table = pd.DataFrame({"review": [f"{t} ({i})" for i, t in enumerate(sentences)], "stars": range(20)})
    table["status"] = ["married, two children", "single, no children"] * 10
    kinds = {c.name: c.kind for c in make_dataset(table, [0, 1] * 10).columns}
    assert kinds == {"review": "text", "stars": "numeric", "status": "categorical"}
    with pytest.raises(DataError, match=r"a text model reads one column of text; the table has 2 \(review, stars\)"):
        make_dataset(pd.DataFrame({"review": sentences, "stars": [1] * 20}), ["pos"] * 20, kind="text")


def test_bad_texts_get_clear_errors(tmp_path):
    with pytest.raises(DataError, match="text sample 1 is None"):
        make_dataset(["good", None, "bad", "ok"], [0, 1, 0, 1])
    with pytest.raises(DataError, match="every text is empty"):
        make_dataset(["", " ", "", ""], [0, 1, 0, 1])
    with pytest.raises(DataError, match="expected text .* got an array of shape"):
        make_dataset(np.zeros((4, 3)), [0, 1, 0, 1], kind="text")
    with pytest.raises(DataError, match="expected sequence input, got strings"):
        make_dataset(["a", "b", "c", "d"], [0, 1, 0, 1], kind="sequence")
    (tmp_path / "t" / "a").mkdir(parents=True)
    (tmp_path / "t" / "a" / "x.txt").write_bytes(b"\x81\x8d\x90 bad")  # no text encoding has these three
    with pytest.raises(DataError, match="x.txt: not UTF-8 text .*, nor Windows cp1252"):
        make_dataset(tmp_path / "t")
    (tmp_path / "t" / "a" / "x.txt").write_text("fine")
    (tmp_path / "t" / "a" / "notes.md").write_text("?")
    with pytest.raises(DataError, match="only images .* or only .txt files; found '.md'"):
        make_dataset(tmp_path / "t")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="expected one sub-folder per class"):
        make_dataset(tmp_path / "none")


# ---------------------------------------------------------------- sequences


def test_a_csv_of_series_one_per_row_is_read_as_sequences_when_a_sequence_model_asks(tmp_path):
    """UCR's CSV layout: one series per row, one step per column, shorter series ending in empty cells.
    A sequence space or `SequenceClassifier` reads it as masked sequences, and new rows likewise."""
    rows = [[float(i + 1)] * n + [None] * (6 - n) for i, n in enumerate((6, 4, 5, 3, 6, 2, 4, 5))]
    table = pd.DataFrame(rows, columns=[f"t{j}" for j in range(6)]).assign(label=["a", "b"] * 4)
    path = tmp_path / "series.csv"
    table.to_csv(path, index=False)
    assert load_data(str(path), target="label").kind == "tabular"  # a table unless a sequence model asks
    ds = load_data(str(path), target="label", kind="sequence", validation_split=0.25, seed=0)
    assert ds.kind == "sequence" and ds.masked and ds.input_shape[1:] == (1,)
    lengths = sorted(int((s != 0).any(axis=1).sum()) for s in [*ds.x_train, *ds.x_val])
    assert lengths == [2, 3, 4, 4, 5, 5, 6, 6]  # each series as long as its filled cells
    new = model_inputs(ds, pd.DataFrame([[1.0, 2.0, None, None, None, None]], columns=table.columns[:6]))
    assert new.shape == (1, *ds.input_shape) and (new[0, 2:] == 0).all()  # padded like the training series
    gap = table.copy()
    gap.loc[3, "t1"] = None
    with pytest.raises(DataError, match="row 3 has an empty cell before its last value"):
        make_dataset(gap.drop(columns="label"), gap.label, kind="sequence")
    with pytest.raises(DataError, match="column 'label' is not numeric; a table of sequences holds one series per row"):
        make_dataset(table, table.label, kind="sequence")


def test_ragged_sequences_are_padded_masked_and_standardised_on_real_steps():
    seqs = [np.full((n, 2), n, "float32") for n in (2, 5, 3, 4, 1, 5, 2, 3)]
    ds = make_dataset(seqs, [0, 1] * 4, validation_split=0.25, seed=0)
    assert ds.kind == "sequence" and ds.input_shape == (5, 2) and ds.masked
    real = [s for s in ds.x_train.reshape(-1, 2) if s.any()]
    np.testing.assert_allclose(ds.feature_mean, np.mean(real, axis=0))
    univariate = make_dataset([[1, 2, 3], [1, 2], [4], [5, 6, 7, 8]], [0, 1, 0, 1], validation_split=0.5)
    assert univariate.input_shape == (4, 1)
    padded = make_dataset(np.arange(24.0).reshape(4, 6) + 1, [0, 1, 0, 1], kind="sequence", validation_split=0.5)
    assert padded.input_shape == (6, 1) and not padded.masked
    # validation sequences longer than the training ones: both padded to the longest
    ds = make_dataset(
        [np.ones((3, 2))] * 4, [0, 1] * 2, validation_data=([np.ones((6, 2))] * 2, [0, 1]), kind="sequence"
    )  # equal-length 2-D samples would otherwise be grayscale images
    assert ds.x_train.shape == (4, 6, 2) and ds.x_val.shape == (2, 6, 2) and ds.masked
    assert model_inputs(ds, [np.ones((2, 2))]).shape == (1, 6, 2)
    with pytest.raises(DataError, match="sequences have 9 steps; the model takes at most 6"):
        model_inputs(ds, [np.ones((9, 2))])


def test_ragged_tensor_input():
    import tensorflow as tf

    ragged = tf.ragged.constant([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0], [7.0]])
    ds = make_dataset(ragged, [0, 1, 0, 1], validation_split=0.5)
    assert ds.kind == "sequence" and ds.input_shape == (3, 1)


@pytest.mark.parametrize(
    "x, message",
    [
        ([np.ones((3, 2)), np.ones((0, 2)), np.ones((2, 2)), np.ones((4, 2))], "sequence 1 is empty"),
        (
            [np.ones((3, 2)), np.ones((2, 3)), np.ones((2, 2)), np.ones((4, 2))],
            "sequence 1 has 3 features per step, sequence 0 has 2",
        ),
        ([np.ones((3, 2)), np.ones((2, 2)), [[1.0, np.nan]], np.ones((4, 2))], "sequence 2 contains NaN"),
        (
            [np.ones((3, 2, 2)), np.ones((2, 2, 2)), np.ones((1, 2, 2)), np.ones((4, 2, 2))],
            "sequence 0 has shape (3, 2, 2)",
        ),
    ],
)
def test_bad_sequences_get_clear_errors(x, message):
    with pytest.raises(DataError) as info:
        make_dataset(x, [0, 1, 0, 1])
    assert message in str(info.value)


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "y, kwargs, message",
    [
        (np.eye(2)[np.arange(10) % 2], {}, "not one-hot rows"),
        (np.linspace(0, 1, 10), {"task": "classification"}, "fractional values such as"),
        (np.array(["a", "b"] * 5), {"task": "regression"}, "regression targets must be numbers"),
        (np.array(["a", None] * 5, dtype=object), {}, "y has 5 missing labels (first at sample 1)"),
        (np.array([1, "1"] * 5, dtype=object), {}, "labels mix types"),
        (np.array([0.5, np.nan] * 5), {}, "y contains NaN"),
    ],
)
def test_bad_labels_get_clear_errors(y, kwargs, message):
    with pytest.raises(DataError) as info:
        make_dataset(np.zeros((10, 3)), y, **kwargs)
    assert message in str(info.value)
