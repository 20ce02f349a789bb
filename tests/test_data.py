"""Inputs: built-in sets, CSV, npz, arrays; every bad input gets a clear error."""
import numpy as np
import pytest

from automl.data import DataError, load_data, make_dataset


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
    np.savez(path, x=rng.normal(size=(30, 4)), y=rng.normal(size=30), x_val=rng.normal(size=(10, 4)),
             y_val=rng.normal(size=10))
    ds = load_data(str(path))
    assert len(ds.x_val) == 10 and ds.task == "regression"


@pytest.mark.parametrize("x, y, kwargs, message", [
    (np.zeros((10, 3)), np.zeros(9, int), {}, "x has 10 samples but y has 9"),
    (np.zeros((0, 3)), np.zeros(0, int), {}, "x is empty"),
    (np.array([[1.0, np.nan]] * 10), np.arange(10) % 2, {}, "NaN"),
    (np.zeros((10, 3)), np.zeros(10, int), {}, "at least 2 classes"),
    (np.zeros((10, 3)), np.arange(10) % 2, {"validation_split": 1.5}, "validation_split"),
    (np.zeros((3, 3)), np.arange(3) % 2, {"validation_split": 0.1}, "too few"),
    (np.zeros((10, 3, 3, 3, 3)), np.arange(10) % 2, {}, "expected (samples, features)"),
    (np.zeros((10, 3)), np.arange(10) % 2, {"validation_data": (np.zeros((4, 3)), np.array([0, 1, 2, 7]))},
     "validation labels [2, 7] do not occur"),
    (np.zeros((10, 3)), np.arange(10) % 2, {"validation_data": (np.zeros((4, 5)), np.array([0, 1, 0, 1]))},
     "validation data: x has shape (5,) per sample"),
    ([["a", "b"]] * 10, np.arange(10) % 2, {}, "x must be numeric"),
    (np.zeros((10, 3)), np.arange(10) % 2, {"task": "ranking"}, "task must be one of"),
])
def test_bad_arrays_get_clear_errors(x, y, kwargs, message):
    with pytest.raises(DataError) as info:
        make_dataset(x, y, **kwargs)
    assert message in str(info.value)


def test_bad_files_get_clear_errors(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label\n1,x,0\n2,y,1\n")
    with pytest.raises(DataError, match="no column 'target'"):
        load_data(str(csv), target="target")
    with pytest.raises(DataError, match="column 'b' is not numeric"):
        load_data(str(csv), target="label")
    with pytest.raises(DataError, match="--target COLUMN is required"):
        load_data(str(csv))
    with pytest.raises(DataError, match="not a built-in data set"):
        load_data(str(tmp_path / "missing.csv"))
    npz = tmp_path / "d.npz"
    np.savez(npz, inputs=np.zeros((3, 2)))
    with pytest.raises(DataError, match="no array 'x'"):
        load_data(str(npz))
