"""Fixed preprocessing computed once (automl/feature_cache.py): the trained model is the same one."""

import keras
import numpy as np
import pandas as pd
import pytest

from automl.builder import build_model
from automl.data import make_dataset
from automl.feature_cache import FeatureCache
from automl.records import TrialSettings
from automl.training import fit_model, training_settings


def _table(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "noise": rng.normal(size=n), "colour": colour})
    df.loc[rng.choice(n, n // 10, replace=False), "noise"] = np.nan
    return make_dataset(df, np.where(x + (colour == "red") * 1.5 > 0.5, "yes", "no"), name="table", seed=0)


def _arch(categorical="one_hot", units=16):
    return {
        "columns": {"block": "tabular", "categorical": categorical, "embedding_dim": 3},
        "hidden": {"block": "dense", "units": units, "dropout": 0.2},
    }


@pytest.fixture(scope="module")
def table():
    return _table(200)


def test_the_trainable_part_on_cached_features_is_the_full_model(table):
    cache = FeatureCache(table)
    for categorical in ("one_hot", "embedding"):
        model = build_model(_arch(categorical), table)
        trainable, _x_train, x_val = cache.split(model)
        assert len(trainable.weights) == len(model.weights) and {w.path for w in trainable.trainable_weights} == {
            w.path for w in model.trainable_weights
        }
        np.testing.assert_array_equal(trainable.predict(x_val, verbose=0), model.predict(table.x_val, verbose=0))
    assert (cache.hits, cache.misses) == (0, 2)  # one-hot and embedded categories are two preprocessings
    cache.split(build_model(_arch("one_hot", units=32), table))  # other layers after it: the same features
    assert (cache.hits, cache.misses) == (1, 2)


@pytest.mark.parametrize(
    "arch_of",
    [
        lambda: {
            "columns": {"block": "tabular", "categorical": "embedding", "embedding_dim": 3},
            "hidden": {"block": "dense", "units": 8, "dropout": 0.3, "norm": "batch"},
        },
        lambda: _arch("one_hot"),
    ],
)
def test_training_through_the_cache_gives_the_same_model_as_training_on_raw_columns(table, arch_of):
    settings = TrialSettings(objective="val_loss", direction="minimize", epochs=4, patience=None)
    training = training_settings({"learning_rate": 0.01, "batch_size": 32})
    runs = []
    for features in (None, FeatureCache(table)):
        keras.utils.set_random_seed(3)
        model = build_model(arch_of(), table)
        history = fit_model(model, table, training, settings, [], features)
        runs.append(
            (
                history.history,
                model.predict(table.x_val, verbose=0),
                model.evaluate(table.x_val, table.y_val, verbose=0, return_dict=True),
            )
        )
    (raw_history, raw_pred, _raw_eval), (cached_history, cached_pred, cached_eval) = runs
    assert cached_history.keys() == raw_history.keys()
    for name, values in raw_history.items():
        assert cached_history[name] == pytest.approx(values, rel=1e-5), name
    np.testing.assert_allclose(cached_pred, raw_pred, rtol=1e-5, atol=1e-6)
    assert cached_eval["loss"] == pytest.approx(cached_history["val_loss"][-1], rel=1e-5)  # compiled and trained


def test_fixed_layers_in_a_chain_are_cut_after_each_and_compute_the_same():
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    data = make_dataset(x, np.arange(40) % 2, seed=0)
    inputs = keras.Input((3,))
    first = keras.layers.Normalization(mean=1.0, variance=4.0)(inputs)
    second = keras.layers.Normalization(mean=0.5, variance=2.0)(first)
    for hidden in (second, keras.layers.Concatenate()([first, second])):
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
        trainable, _, x_val = FeatureCache(data).split(model)
        np.testing.assert_allclose(trainable.predict(x_val, verbose=0), model.predict(data.x_val, verbose=0), rtol=1e-6)


def test_models_without_fixed_preprocessing_or_too_large_features_train_on_raw_inputs(table, digits_small):
    assert FeatureCache(digits_small).split(build_model({"head": {"block": "dense", "units": 8}}, digits_small)) is None
    assert FeatureCache(table, max_bytes=100).split(build_model(_arch(), table)) is None
    inputs = keras.Input((3,))  # a random layer in front of a fixed one: outputs change per epoch
    noisy = keras.layers.Normalization(mean=0.0, variance=1.0)(keras.layers.GaussianNoise(0.1)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(noisy))
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    assert FeatureCache(make_dataset(x, np.arange(40) % 2, seed=0)).split(model) is None
    normalized = keras.layers.Normalization(mean=0.0, variance=1.0)(inputs)  # the raw input also skips it
    skip = keras.layers.Concatenate()([normalized, inputs])
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(skip))
    assert FeatureCache(make_dataset(x, np.arange(40) % 2, seed=0)).split(model) is None


def test_a_learning_rate_schedule_spans_the_epochs_of_a_table_with_columns(table):
    """Steps per epoch come from the number of samples (a table's x is a dict of columns)."""
    rates = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    settings = TrialSettings(objective="val_loss", direction="minimize", epochs=4, patience=None)
    fit_model(
        build_model(_arch(), table),
        table,
        training_settings({"learning_rate": 0.01, "batch_size": 32, "schedule": "cosine"}),
        settings,
        [Record()],
        FeatureCache(table),
    )
    # cosine over 4 epochs: after epoch 1 of 4 the rate is 0.01 * (1 + cos(pi / 4)) / 2 = 0.0085
    assert rates[0] == pytest.approx(0.01 * (1 + np.cos(np.pi / 4)) / 2, rel=0.05)
    assert rates[0] > rates[1] > rates[2] > rates[3] >= 0
