"""Data checks before training (automl.checks): each finds the problem planted in small data, names
the columns and samples at fault, and stays silent on clean data."""

import numpy as np
import pandas as pd
import pytest

from automl.checks import check, check_dataset
from automl.data import make_dataset


def _blobs(n=600, seed=0, classes=3):
    """Clusters that only all four columns together tell apart: a clean table (no column alone
    predicts the class, labels agree with their neighbours)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1]], dtype=float)[:classes] * 4.0
    x = rng.normal(size=(n, 4)) * 0.6 + centres[y]
    return pd.DataFrame(x, columns=["a", "b", "c", "d"]), y


def test_clean_data_gives_no_warning():
    x, y = _blobs()
    report = check(x, y)
    assert report.warnings == [], report.summary()
    assert not report.by_check("duplicates") and not report.by_check("leakage")


def test_imbalance_is_found_with_a_recommendation():
    x, y = _blobs(classes=2)
    keep = np.flatnonzero((y == 0) | (np.arange(len(y)) % 10 == 0))  # class 1 kept one time in ten
    report = check(x.iloc[keep], y[keep])
    (finding,) = report.by_check("class_balance")
    assert finding.severity == "warning" and "class_weight: [none, balanced]" in finding.message
    assert finding.details["ratio"] > 5


def test_duplicates_conflicts_and_train_validation_overlap_name_their_samples():
    x, y = _blobs(n=400)
    x_val, y_val = x.iloc[300:].reset_index(drop=True), y[300:]
    x_train, y_train = x.iloc[:300].reset_index(drop=True), y[:300].copy()
    x_train.iloc[250:260] = x_train.iloc[0:10].to_numpy()  # ten exact copies
    y_train[250:260] = y_train[0:10]
    y_train[259] = (y_train[9] + 1) % 3  # ... one of them with another label
    x_val.iloc[5:8] = x_train.iloc[100:103].to_numpy()  # three validation rows seen in training
    ds = make_dataset(x_train, y_train, validation_data=(x_val, y_val))
    report = check_dataset(ds)
    (dup,) = report.by_check("duplicates")
    assert dup.details["copies"] == 10 and [0, 250] in dup.details["groups"]
    (conflict,) = report.by_check("label_conflict")
    assert set(conflict.samples) == {9, 259}
    (overlap,) = report.by_check("train_val_overlap")
    assert overlap.val_samples == [5, 6, 7] and overlap.samples == [100, 101, 102]


def test_duplicate_rows_of_a_table_with_categories_and_gaps_are_found():
    """A table with a categorical column and missing values (one model input per column): rows copied
    with their gaps are exact copies; a row that differs in its category alone is not one."""
    x, y = _blobs(n=300)
    x["colour"] = np.random.default_rng(3).choice(["red", "blue"], len(x))
    x.loc[::7, "a"] = np.nan
    x.iloc[280:285] = x.iloc[0:5].to_numpy()  # five copies, row 0's gap included
    y[280:285] = y[0:5]
    x.iloc[285] = x.iloc[10].to_numpy()
    x.loc[285, "colour"] = "green" if x.loc[10, "colour"] != "green" else "red"  # not a copy
    ds = make_dataset(x.iloc[:290], y[:290], validation_data=(x.iloc[290:].reset_index(drop=True), y[290:]))
    assert isinstance(ds.x_train, dict)  # the per-column path
    (dup,) = check_dataset(ds).by_check("duplicates")
    assert dup.details["copies"] == 5 and [0, 280] in dup.details["groups"]
    assert not any(10 in g for g in dup.details["groups"])


def test_near_duplicate_texts_and_images_are_found():
    texts = [f"message number {i} about topic {i % 7}" for i in range(200)]
    texts[150] = texts[3].upper() + "!!"  # the same text, shouted
    y = np.arange(200) % 2
    report = check(np.array(texts, dtype=object), y, kind="text", validation_split=0.25)
    near = [f for f in report.by_check("duplicates") if f.details["how"] == "near"]
    assert near and near[0].details["copies"] == 1
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (200, 8, 8)).astype("float32")
    images[120] = images[7] + rng.normal(0, 0.5, (8, 8))  # sensor noise on a copy
    report = check(images, np.arange(200) % 2, validation_data=(images[:1] + 300, np.array([0])))
    near = [f for f in report.by_check("duplicates") if f.details["how"] == "near"]
    assert near and sorted(near[0].details["groups"][0]) == [7, 120]


def test_column_checks_constant_id_leak_missing_outliers():
    x, y = _blobs(n=500)
    rng = np.random.default_rng(1)
    x["constant"] = 1.0
    x["row_id"] = rng.permutation(len(x)).astype(float)
    x["leak"] = y * 10.0 + rng.normal(0, 0.1, len(x))  # the label, barely disguised
    x["sparse"] = np.where(rng.random(len(x)) < 0.6, np.nan, 1.0 + rng.random(len(x)))
    x.loc[42, "a"] = 1e6  # a typo
    train, val = x.iloc[:400], x.iloc[400:].reset_index(drop=True)
    report = check(train, y[:400], validation_data=(val, y[400:]))
    found = {f.check: f for f in report.findings}
    assert found["constant_column"].columns == ["constant"]
    assert found["id_column"].columns == ["row_id"]
    assert [f.columns for f in report.by_check("leakage")] == [["leak"]]
    missing = report.by_check("missing_values")
    assert [f.columns for f in missing] == [["sparse"]] and missing[0].severity == "warning"
    assert 0.5 < missing[0].details["share"] < 0.7
    outliers = {tuple(f.columns): f for f in report.by_check("outliers")}
    assert outliers[("a",)].samples == [42]


def test_a_row_number_given_after_sorting_by_label_is_an_identifier_that_leaks():
    """A random id is only an identifier (the test above); rows numbered after sorting by label let
    the number tell the label: that id is leakage too, and says so."""
    x, y = _blobs(n=500)
    order = np.argsort(y, kind="stable")
    x, y = x.iloc[order].reset_index(drop=True), y[order]
    x["row"] = np.arange(len(x), dtype=float)
    shuffled = np.random.default_rng(2).permutation(len(x))  # split at random, as a search does
    train, val = shuffled[:400], shuffled[400:]
    report = check(x.iloc[train], y[train], validation_data=(x.iloc[val].reset_index(drop=True), y[val]))
    assert report.by_check("id_column")[0].columns == ["row"]
    (leak,) = report.by_check("leakage")
    assert leak.columns == ["row"] and leak.details["score"] > 0.98


def test_label_noise_hints_point_at_the_flipped_labels():
    x, y = _blobs(n=800, seed=2)
    noisy = y.copy()
    flipped = np.arange(0, 800, 20)  # 5 % of the labels wrong
    noisy[flipped] = (y[flipped] + 1) % 3
    report = check(x, noisy, validation_data=(x.iloc[:30], noisy[:30]))
    (finding,) = report.by_check("label_noise")
    assert 30 <= finding.details["count"] <= 50  # 40 planted
    assert len(set(flipped.tolist()) & set(finding.samples)) >= 0.8 * len(finding.samples)


def test_sequence_length_spread_is_reported():
    rng = np.random.default_rng(0)
    series = [rng.normal(size=(10 if i % 20 else 80, 1)) for i in range(100)]
    report = check(series, np.arange(100) % 2)
    (finding,) = report.by_check("sequence_length")
    assert finding.details["min"] == 10 and finding.details["max"] == 80 and finding.severity == "warning"


@pytest.mark.parametrize("rows", [200])
def test_the_report_is_written_as_json_and_markdown(tmp_path, rows):
    import json

    x, y = _blobs(n=rows)
    x["constant"] = 0.0
    report = check(x, y)
    json_path, md_path = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    assert data["findings"][0]["check"] == "constant_column" and "| warning | constant_column |" in md_path.read_text()
