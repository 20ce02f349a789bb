"""Known strong ingredients (issue 17, part 5) on real Keras: numeric feature embeddings for tables
(values hand-computed), balanced class weights (the training loss weighted as computed by hand),
per-series normalisation and ROCKET features (against a NumPy reference, padding excluded), each
model through `.keras` (safe mode) and TFLite / LiteRT; the shipped spaces' start entries build
the models they name."""

import keras
import numpy as np
import optuna
import pytest
from seq_text_checks import check_round_trip, table_data, text_data, tflite_convert, tflite_predict

from automl.blocks.numeric import PeriodicEncoding, PiecewiseLinearEncoding, quantile_edges
from automl.blocks.series import RandomConvolutions, SeriesNormalization
from automl.blocks.trees import BoostedTrees
from automl.builder import build_model
from automl.data import make_dataset
from automl.feature_cache import FeatureCache
from automl.records import TrialSettings
from automl.space import load_space
from automl.training import class_weights, fit_model, training_settings


@pytest.fixture(scope="module")
def table():
    return table_data()


def waves(n=64, seed=0, lengths=(32, 32)):
    """Noisy sine waves, slow (class 0) or fast (class 1), random phase; `lengths` (low, high) steps,
    padded with zeros to the longest."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    series = []
    for label in y:
        t = np.arange(int(rng.integers(lengths[0], lengths[1] + 1)))
        wave = np.sin(2 * np.pi * t / (4 if label else 16) + rng.uniform(0, 2 * np.pi))
        series.append((wave + 0.1 * rng.normal(size=len(t)))[:, None].astype("float32"))
    return make_dataset(series, y, validation_split=0.25, seed=seed, kind="sequence")


def _sub(model, layer_type):
    (layer,) = [layer for layer in model.layers if isinstance(layer, layer_type)]
    return layer, keras.Model(model.inputs, layer.output)


def _check_exports(model, data, tmp_path):
    expected = check_round_trip(model, data, tmp_path)  # a training step, then .keras in safe mode
    np.testing.assert_allclose(tflite_predict(tflite_convert(model), data.x_val), expected, atol=1e-4)


# ---------------------------------------------------------------- tables


def test_piecewise_linear_encoding_hand_computed():
    assert quantile_edges(np.arange(9.0), 4) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert quantile_edges(np.array([0, 0, 0, 0, 1.0, np.nan]), 4) == [0.0, 1.0]  # ties merge bins, NaN ignored
    assert quantile_edges(np.array([5.0, 5.0]), 4) == [5.0, 6.0]  # a constant column: one bin
    layer = PiecewiseLinearEncoding([[0.0, 2.0, 4.0, 6.0, 8.0], [0.0, 1.0]])
    # columns: feature 0 (4 bins), feature 1 (1 bin, padded to 4), a missing-value flag passed through
    x = np.array([[-1.0, 0.5, 1.0], [3.0, 2.0, 0.0], [9.0, -3.0, 1.0]], "float32")
    expected = [
        [-0.5, 0, 0, 0, 0.5, 0, 0, 0, 1],  # below the first edge: the first bin extrapolates
        [1, 0.5, 0, 0, 2.0, 0, 0, 0, 0],  # full bins below, half of the bin it falls in; one bin: no clipping
        [1, 1, 1, 1.5, -3.0, 0, 0, 0, 1],  # beyond the last edge: the last bin extrapolates
    ]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-6)


def test_periodic_encoding_hand_computed():
    rng = np.random.default_rng(0)
    layer = PeriodicEncoding(features=2, frequencies=3, sigma=0.5, dim=4)
    x = rng.normal(size=(5, 3)).astype("float32")  # two numbers and a flag
    layer.build(x.shape)
    c, w, b = rng.normal(size=(2, 3)), rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 4))
    layer.set_weights([c, w, b])
    got = np.asarray(layer(x))
    assert got.shape == (5, 2 * 4 + 1)
    for f in range(2):
        angle = 2 * np.pi * x[:, f : f + 1] * c[f]
        features = np.maximum(np.concatenate([np.sin(angle), np.cos(angle)], 1) @ w[f] + b[f], 0)
        np.testing.assert_allclose(got[:, 4 * f : 4 * f + 4], features, atol=1e-5)
    np.testing.assert_array_equal(got[:, -1], x[:, 2])


def load_matrix():
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return x[:120], y[:120]


def test_tabular_block_learns_bins_from_the_standardised_training_split(table):
    model = build_model({"c": {"block": "tabular", "numeric": "piecewise_linear", "numeric_bins": 4}}, table)
    layer = model.get_layer("numeric_ple")
    for column, edges in zip([c for c in table.columns if c.kind == "numeric"], layer.edges):
        standardised = (table.x_train[column.name] - column.mean) / column.std
        assert edges == pytest.approx(quantile_edges(standardised, 4))
    assert layer.output.shape == (None, 2 * 4 + 1)  # age and income, 4 bins each, income's missing flag

    x, y = load_matrix()
    matrix = make_dataset(x, y, seed=0)  # all numeric: a plain standardised matrix
    model = build_model({"c": {"block": "tabular", "numeric": "piecewise_linear", "numeric_bins": 8}}, matrix)
    first = (matrix.x_train[:, 0] - matrix.feature_mean[0]) / np.sqrt(matrix.feature_var[0])
    assert model.get_layer("numeric_ple").edges[0] == pytest.approx(quantile_edges(first, 8))
    model = build_model({"c": {"block": "tabular", "numeric": "periodic", "numeric_dim": 4}}, matrix)
    assert model.get_layer("numeric_periodic").output.shape == (None, x.shape[1] * 4)


@pytest.mark.parametrize("numeric", ["piecewise_linear", "periodic"])
def test_numeric_embeddings_reload_and_run_in_litert(numeric, table, tmp_path):
    model = build_model({"c": {"block": "tabular", "numeric": numeric}, "h": {"block": "dense", "units": 8}}, table)
    _check_exports(model, table, tmp_path)


def test_balanced_class_weights_weight_the_training_loss_as_computed_by_hand():
    assert class_weights("classification", np.array([0] * 6 + [1] * 2), "balanced") == {0: 8 / 12, 1: 8 / 4}
    assert class_weights("regression", np.array([0.5, 1.0]), "balanced") is None
    assert class_weights("classification", np.array([0, 1, 1]), "none") is None
    with pytest.raises(ValueError, match="training.class_weight must be one of"):
        training_settings({"class_weight": "inverse"})

    rng = np.random.default_rng(0)
    y = np.array([0] * 45 + [1] * 7 + [2] * 8)
    data = make_dataset(rng.normal(size=(60, 3)).astype("float32") + y[:, None], y, validation_split=0.25, seed=0)
    losses = {}
    for setting in ("none", "balanced"):
        keras.utils.set_random_seed(0)
        model = build_model({"h": {"block": "dense", "units": 4}}, data)
        p = model.predict(data.x_train, verbose=0)
        per_sample = -np.log(p[np.arange(len(data.y_train)), data.y_train])
        weights = class_weights(data.task, data.y_train, setting) or dict.fromkeys(range(3), 1.0)
        training = training_settings({"batch_size": len(data.y_train), "class_weight": setting})
        history = fit_model(model, data, training, TrialSettings("val_accuracy", "maximize", 1, None), [])
        # one batch: the epoch's loss is the loss before the update, Keras' mean of weighted sample losses
        losses[setting] = history.history["loss"][0]
        expected = np.mean([weights[k] * loss for k, loss in zip(data.y_train, per_sample)])
        assert losses[setting] == pytest.approx(expected, rel=1e-5)
    assert abs(losses["balanced"] - losses["none"]) > 0.05


# ---------------------------------------------------------------- sequences


def rocket_reference(layer, x, real):
    """ROCKET features in NumPy: 'same' zero-padded dilated convolutions over the real steps only."""
    x = x * real[..., None]
    steps, maxima, ppv = x.shape[1], [], []
    for d, kernel, bias in zip(layer.dilations, layer.kernels, layer.biases):
        kernel, half = np.asarray(kernel), (np.asarray(kernel).shape[0] - 1) // 2 * d
        padded = np.pad(x, ((0, 0), (half, half), (0, 0)))
        y = sum(padded[:, j * d : j * d + steps] @ kernel[j] for j in range(kernel.shape[0])) + np.asarray(bias)
        maxima.append(np.where(real[..., None], y, -np.inf).max(axis=1))
        ppv.append(((y > 0) & real[..., None]).sum(axis=1) / real.sum(axis=1, keepdims=True))
    return np.concatenate(maxima + ppv, axis=1)


def test_series_normalisation_and_rocket_features_skip_the_padding(tmp_path):
    data = waves(lengths=(20, 40))
    assert data.masked
    model = build_model(
        {"n": {"block": "series_norm", "mode": "series"}, "r": {"block": "rocket", "num_kernels": 12}}, data
    )
    x = data.x_val
    real = np.any(x != 0, axis=-1)
    assert not real.all()  # some series are padded

    _, normalise = _sub(model, SeriesNormalization)
    z = normalise.predict(x, verbose=0)
    for series, mask in zip(z, real):
        np.testing.assert_allclose(series[mask].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(series[mask].std(axis=0), 1, atol=1e-4)
        assert (series[~mask] == 0).all()

    layer, features = _sub(model, RandomConvolutions)
    assert len(layer.dilations) > 1  # dilated kernels are exercised
    got = features.predict(x, verbose=0)
    # NumPy z-normalises the raw series: the builder's dataset-wide standardisation before it cancels out
    count = real.sum(axis=1)[:, None, None]
    mean = (x * real[..., None]).sum(axis=1, keepdims=True) / count
    std = np.sqrt((((x - mean) * real[..., None]) ** 2).sum(axis=1, keepdims=True) / count)
    np.testing.assert_allclose(got, rocket_reference(layer, (x - mean) / std, real), atol=1e-4)
    ppv = got[:, 12:]
    assert ((ppv >= 0) & (ppv <= 1)).all() and 0 < ppv.mean() < 1

    _check_exports(model, data, tmp_path)


def test_dataset_mode_adds_no_layer_and_series_mode_exports(tmp_path):
    data = waves(lengths=(20, 40))
    plain = build_model({"n": {"block": "series_norm", "mode": "dataset"}}, data)
    assert not any(isinstance(layer, SeriesNormalization) for layer in plain.layers)
    model = build_model({"n": {"block": "series_norm", "mode": "series"}}, data)  # then the builder's pooling
    _check_exports(model, data, tmp_path)


def test_rocket_learns_with_fixed_kernels_from_the_feature_cache():
    data = waves()  # fixed length: no padding, so the fixed layers' outputs are cached
    keras.utils.set_random_seed(0)
    model = build_model({"r": {"block": "rocket", "num_kernels": 100, "seed": 3}}, data)
    layer = next(layer for layer in model.layers if isinstance(layer, RandomConvolutions))
    assert layer.weights and not layer.trainable_weights
    before = [np.array(w) for w in layer.weights]
    cache = FeatureCache(data)
    training = training_settings({"learning_rate": 0.01, "batch_size": 16})
    history = fit_model(model, data, training, TrialSettings("val_accuracy", "maximize", 8, None), [], cache)
    assert cache.misses == 1  # trained on the cached features
    for b, w in zip(before, layer.weights):
        np.testing.assert_array_equal(b, np.array(w))
    accuracy = float(np.mean(model.predict(data.x_val, verbose=0).argmax(1) == data.y_val))
    assert accuracy == history.history["val_accuracy"][-1] == 1.0  # the raw-input model computes what trained
    # the same seed draws the same kernels
    again = build_model({"r": {"block": "rocket", "num_kernels": 100, "seed": 3}}, data)
    other = next(layer for layer in again.layers if isinstance(layer, RandomConvolutions))
    for b, w in zip(before, other.weights):
        np.testing.assert_array_equal(b, np.array(w))


# ---------------------------------------------------------------- the shipped spaces


def _start_model(space_name, index, data):
    space = load_space(space_name)
    config = space.sample(optuna.trial.FixedTrial(space.start[index]))  # a start entry names every parameter
    return build_model(config.architecture, data), config


def test_start_entries_build_the_models_they_name(table, digits_small):
    texts = text_data()
    linear, _ = _start_model("text_cnn_rnn", 2, texts)  # word 1-2-gram TF-IDF, fitted linear, no hidden layer
    dense = [layer.name for layer in linear.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == ["linear_prior", "output_logits"]
    assert not linear.get_layer("linear_prior").trainable
    vectorize = linear.get_layer("ngrams").get_config()
    assert (vectorize["ngrams"], vectorize["output_mode"], vectorize["split"]) == (2, "tf_idf", "whitespace")
    hidden, _ = _start_model("text_cnn_rnn", 0, texts)
    assert len([layer for layer in hidden.layers if isinstance(layer, keras.layers.Dense)]) == 2

    seqs = waves()
    rocket, _ = _start_model("sequence_rnn", 1, seqs)
    assert [layer.num_kernels for layer in rocket.layers if isinstance(layer, RandomConvolutions)] == [1000]
    conv, _ = _start_model("sequence_rnn", 0, seqs)  # as before: no per-series normalisation
    assert not any(isinstance(layer, SeriesNormalization | RandomConvolutions) for layer in conv.layers)

    trees, config = _start_model("tabular_mlp", 0, table)  # the full-suite portfolio (bench/portfolio.py)
    assert config.training["class_weight"] == "none" and trees.get_layer("numeric_ple").bins == 16
    assert any(isinstance(layer, BoostedTrees) for layer in trees.layers)
    mlp, config = _start_model("tabular_mlp", 1, table)
    assert config.training["class_weight"] == "balanced"
    assert not any(isinstance(layer, PiecewiseLinearEncoding | PeriodicEncoding | BoostedTrees) for layer in mlp.layers)
    periodic, _ = _start_model("tabular_mlp", 2, table)
    assert any(isinstance(layer, PeriodicEncoding) for layer in periodic.layers)
    linear, _ = _start_model("tabular_mlp", 3, table)  # the fitted ridge / logistic regression under an MLP
    assert not linear.get_layer("linear_prior").trainable
    assert not any(isinstance(layer, BoostedTrees) for layer in linear.layers)
    for i in (0, 1):  # no augmentation layer in the image starts
        cnn, _ = _start_model("image_cnn", i, digits_small)
        assert not any(layer.__class__.__name__.startswith("Random") for layer in cnn.layers)
    space = load_space("image_cnn")
    augmented = space.sample(optuna.trial.FixedTrial({**space.start[0], "augment.rotation": 0.05}))
    model = build_model(augmented.architecture, digits_small)
    assert any(isinstance(layer, keras.layers.RandomRotation) for layer in model.layers)


def _reviews(n: int, seed: int, offset: int = 0):
    """A table whose label lives in a text column's words: each review is unique (a running number),
    so a category per row could only memorise, never predict a new one."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    good = ["arrived fast and works great", "excellent quality for the price", "very happy, would buy again"]
    bad = ["broke after one week of use", "poor quality and far too expensive", "arrived damaged, very disappointed"]
    y = np.arange(n) % 2
    texts = [f"{rng.choice(good if label else bad)} order {offset + i}" for i, label in enumerate(y)]
    return pd.DataFrame({"review": texts, "price": rng.normal(50, 10, n), "colour": rng.choice(["red", "blue"], n)}), y


def test_a_text_column_of_a_table_is_read_as_words_and_predicts_new_reviews(tmp_path):
    x, y = _reviews(120, seed=0)
    data = make_dataset(x, y, validation_split=0.25, seed=0)
    assert {c.name: c.kind for c in data.columns} == {"review": "text", "price": "numeric", "colour": "categorical"}
    keras.utils.set_random_seed(0)
    model = build_model({"c": {"block": "tabular"}, "h": {"block": "dense", "units": 16}}, data)
    training = training_settings({"learning_rate": 0.01, "batch_size": 16})
    fit_model(model, data, training, TrialSettings("val_accuracy", "maximize", 15, None), [])
    new_x, new_y = _reviews(40, seed=1, offset=1000)  # reviews the model never saw
    from automl.data import model_inputs

    inputs = model_inputs(data, new_x)
    predicted = model.predict(inputs, verbose=0)
    assert float(np.mean(predicted.argmax(1) == new_y)) >= 0.95
    model.save(tmp_path / "m.keras")
    from automl.saved import load_model

    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(inputs, verbose=0), predicted, atol=1e-5)
    for head in ({"trees": "boosted"}, {"linear": "fitted"}):  # the trees skip the text; the linear model reads it
        assert build_model({"c": {"block": "tabular", **head}}, data).predict(inputs, verbose=0).shape == (40, 2)


def test_a_date_column_is_learnt_from_its_parts_and_predicts_new_dates():
    """The label is whether the day is a weekend: as strings every date would be a new category;
    through its parts (weekday among them) a model predicts dates it never saw."""
    import pandas as pd

    from automl.data import model_inputs

    days = pd.date_range("2023-01-01", periods=280, freq="D")
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "amount": rng.normal(size=280)})
    data = make_dataset(table, (days.day_of_week >= 5).astype(int), validation_split=0.25, seed=0)
    keras.utils.set_random_seed(0)
    model = build_model({"c": {"block": "tabular", "trees": "boosted"}}, data)
    settings = TrialSettings("val_loss", "minimize", 5, None)
    fit_model(model, data, training_settings({"learning_rate": 0.01}), settings, [])
    later = pd.date_range("2024-06-01", periods=60, freq="D")
    new = model_inputs(data, pd.DataFrame({"day": later.strftime("%Y-%m-%d"), "amount": rng.normal(size=60)}))
    predicted = model.predict(new, verbose=0).argmax(1)
    assert float(np.mean(predicted == (later.day_of_week >= 5))) >= 0.95
