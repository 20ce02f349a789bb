"""Boosted trees inside a table model (automl/blocks/trees.py): the Keras layer computes exactly what
scikit-learn's fitted trees predict, the head starts there and learns on top, and the model saves,
reloads and converts (float32 and dynamic-range int8) without changing a prediction."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from seq_text_checks import table_data, tflite_predict

from automl.blocks.trees import _at_most, fit_boosted_trees, known_scores
from automl.builder import build_model
from automl.data import make_dataset
from automl.training import loss_and_metrics


def wine():
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    return make_dataset(x.astype("float32"), y, seed=0)


def diabetes_with_gaps():
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])]).astype("float32")
    df.iloc[::5, 2] = np.nan  # missing values go down each node's learnt side
    return make_dataset(df, y, seed=0)


def one_hot(values, vocabulary: list[str]) -> np.ndarray:
    """StringLookup's one-hot, by hand: slot 0 for values outside the vocabulary."""
    slot = {v: i + 1 for i, v in enumerate(vocabulary)}
    return np.eye(len(vocabulary) + 1)[[slot.get(str(v), 0) for v in values]]


def matrix(data, split):
    """What the trees are fit on: the numbers as they are, then each category one-hot."""
    if data.columns is None:
        return np.asarray(split, "float64")
    numbers = [np.asarray(split[c.name], "float64")[:, None] for c in data.columns if c.kind == "numeric"]
    categories = [one_hot(split[c.name], c.vocabulary[:64]) for c in data.columns if c.kind == "categorical"]
    return np.hstack(numbers + categories)


def sklearn_predictions(data, leaves=31, rate=0.1):
    trees = fit_boosted_trees(
        matrix(data, data.x_train), data.y_train, matrix(data, data.x_val), data.y_val, data, leaves, rate
    )
    x = matrix(data, data.x_val).astype("float32").astype("float64")
    return trees.predict_proba(x) if data.task == "classification" else trees.predict(x)[:, None]


@pytest.mark.parametrize(
    "make, categorical",
    [(wine, "one_hot"), (diabetes_with_gaps, "one_hot"), (lambda: table_data(200), "embedding")],
    ids=["multiclass-matrix", "regression-with-NaN", "binary-table-with-categories"],
)
def test_the_untrained_model_predicts_what_scikit_learn_trees_predict(make, categorical):
    data = make()
    model = build_model(
        {"c": {"block": "tabular", "trees": "boosted", "categorical": categorical, "trees_leaves": 15}}, data
    )
    expected = sklearn_predictions(data, leaves=15)
    got = model.predict(data.x_val, verbose=0)
    scale = 1.0 if data.task == "classification" else float(np.std(data.y_train))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4 * scale
    assert len(np.unique(got[:, -1])) > 3, "the trees must split, not predict one constant"


def test_a_threshold_halfway_between_two_float32_values_decides_as_scikit_learn():
    a = np.nextafter(np.float32(1.0), np.float32(2.0))  # odd last bit: the halfway value rounds up to b
    b = np.nextafter(a, np.float32(2.0))
    halfway = (float(a) + float(b)) / 2  # scikit-learn's threshold between the two values seen
    assert float(np.float32(halfway)) > halfway  # plain rounding would send b to the left
    assert _at_most(halfway) == a and not b <= _at_most(halfway)


def test_the_head_learns_on_top_of_fixed_trees():
    data = wine()
    model = build_model({"c": {"block": "tabular", "trees": "boosted"}, "h": {"block": "dense", "units": 16}}, data)
    trees_before = [np.array(w) for w in model.get_layer("trees").weights]
    start = model.predict(data.x_val, verbose=0)
    assert np.abs(start - sklearn_predictions(data)).max() < 1e-4  # a zero head adds nothing yet
    loss, metrics = loss_and_metrics(data.task)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, metrics=metrics)
    model.fit(data.x_train, data.y_train, epochs=3, batch_size=32, verbose=0)
    assert np.abs(np.array(model.get_layer("output_logits").kernel)).max() > 1e-3
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(trees_before, model.get_layer("trees").weights))
    assert np.abs(model.predict(data.x_val, verbose=0) - start).max() > 1e-4


def test_saved_reloaded_and_converted_models_keep_the_trees_exact(tmp_path):
    data = diabetes_with_gaps()
    model = build_model({"c": {"block": "tabular", "trees": "boosted"}}, data)
    expected = model.predict(data.x_val, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert np.array_equal(loaded.predict(data.x_val, verbose=0), expected)
    scale = float(np.std(data.y_train))
    for optimizations in ([], [tf.lite.Optimize.DEFAULT]):  # float32, dynamic-range int8
        converter = tf.lite.TFLiteConverter.from_keras_model(loaded)
        converter.optimizations = optimizations
        assert np.abs(tflite_predict(converter.convert(), data.x_val) - expected).max() < 1e-4 * scale


def test_the_trees_are_walked_once_per_search_and_told_apart_by_their_nodes():
    from automl.feature_cache import FeatureCache

    data = wine()
    cache = FeatureCache(data)
    architecture = {
        "c": {"block": "tabular", "trees": "boosted", "trees_leaves": 8},
        "h": {"block": "dense", "units": 8},
    }
    model = build_model(architecture, data)
    trainable, _, _ = cache.split(model)
    assert "BoostedTrees" not in {type(layer).__name__ for layer in trainable.layers}
    cache.split(build_model(architecture, data))
    architecture["c"]["trees_learning_rate"] = 0.3
    cache.split(build_model(architecture, data))
    assert (cache.hits, cache.misses) == (1, 2)


@pytest.mark.parametrize(
    "make", [wine, diabetes_with_gaps, lambda: table_data(200)], ids=["multiclass", "regression-with-NaN", "binary"]
)
def test_the_cached_trees_outputs_are_scikit_learns_and_equal_the_layers_walk(make):
    from automl.feature_cache import FeatureCache

    data = make()
    model = build_model({"c": {"block": "tabular", "trees": "boosted"}, "h": {"block": "dense", "units": 8}}, data)
    _, x_train, x_val = FeatureCache(data).split(model)
    known = known_scores(data, model.get_layer("trees"))  # scikit-learn's own walk, done when it fit them
    assert known is not None and any(a is known[0] for a in x_train) and any(a is known[1] for a in x_val)
    walk = keras.Model(model.inputs, model.get_layer("trees").output)
    scale = 1.0 if data.task == "classification" else float(np.std(data.y_train))
    for cached, split in ((known[0], data.x_train), (known[1], data.x_val)):  # the head trains on what the
        assert np.abs(cached - walk.predict(split, verbose=0)).max() < 1e-5 * scale  # layer computes


def test_a_refit_grows_as_many_rounds_as_early_stopping_chose_on_all_rows():
    from automl.refit import with_validation_rows

    data = wine()
    architecture = {"c": {"block": "tabular", "trees": "boosted", "trees_leaves": 8}}
    first = build_model(architecture, data).get_layer("trees")
    both = with_validation_rows(data)
    model = build_model(architecture, both)
    again = model.get_layer("trees")
    assert again.trees == first.trees  # the same rounds, not 300 rounds on rows it also stops on
    assert again.digest != first.digest  # new trees, fit on the validation rows too
    rounds = first.trees // first.per_iteration
    refit = fit_boosted_trees(np.asarray(both.x_train, "float64"), both.y_train, None, None, both, 8, 0.1, rounds)
    x_val = np.asarray(data.x_val, "float32")
    expected = refit.predict_proba(x_val.astype("float64"))
    assert np.abs(model.predict(x_val, verbose=0) - expected).max() < 1e-4
