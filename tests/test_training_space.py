"""Training-space additions on real Keras: the fine-tune learning rate of a backbone, label smoothing
for integer labels, the warmup schedule, and their checks."""

import keras
import numpy as np
import pytest

from automl.builder import build_model, validate_space
from automl.records import TrialSettings
from automl.space import SearchSpace, SpaceError
from automl.training import (
    fit_model,
    learning_rate_schedule,
    loss_and_metrics,
    make_optimizer,
    smoothed_sparse_crossentropy,
    training_settings,
)


@pytest.fixture(scope="module")
def backbone_model_factory(digits_small, tmp_path_factory):
    """Builds digits -> backbone (an earlier conv model from disk) -> new softmax head."""
    keras.utils.set_random_seed(0)
    earlier = build_model(
        {"c": {"block": "conv", "filters": 4, "batch_norm": False}, "p": {"block": "global_pool"}}, digits_small
    )
    path = tmp_path_factory.mktemp("earlier") / "model.keras"
    earlier.save(path)

    def make():
        keras.utils.set_random_seed(0)
        return build_model({"b": {"block": "backbone", "source": str(path)}}, digits_small)

    return make


def _one_step_deltas(model, settings, x, y) -> dict:
    start = {v.path: np.array(v) for v in model.trainable_variables}
    model.compile(
        optimizer=make_optimizer(training_settings(settings), 10, model),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,
    )
    model.train_on_batch(x, y)
    return {v.path: np.array(v) - start[v.path] for v in model.trainable_variables}


def test_fine_tune_learning_rate_steps_the_backbone_only(backbone_model_factory, digits_small):
    x, y = digits_small.x_train[:32], digits_small.y_train[:32]
    sgd = {"optimizer": "sgd", "momentum": 0.0, "learning_rate": 0.1}
    plain = _one_step_deltas(backbone_model_factory(), sgd, x, y)
    model = backbone_model_factory()
    tuned = _one_step_deltas(model, {**sgd, "fine_tune_learning_rate": 0.001}, x, y)
    backbone = {v.path for v in model.get_layer("backbone").trainable_variables}
    assert backbone and set(plain) - backbone  # both parts train
    for path, delta in plain.items():
        assert np.abs(delta).max() > 1e-5  # well above float32 noise, so a missing 0.01 shows
        expected = delta * 0.01 if path in backbone else delta  # SGD: step = rate * gradient
        np.testing.assert_allclose(tuned[path], expected, rtol=1e-3, atol=1e-7, err_msg=path)  # float32 w + dw
    # still a stock Keras optimizer: the saved file loads without automl
    assert model.get_compile_config()["optimizer"]["module"] == "keras.optimizers"


def test_fit_model_passes_label_smoothing_and_the_fine_tune_rate(backbone_model_factory, digits_small):
    model = backbone_model_factory()
    backbone = model.get_layer("backbone")
    before = [np.array(v) for v in backbone.trainable_variables]
    head_before = np.array(model.get_layer("output").kernel)
    training = training_settings(
        {
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "fine_tune_learning_rate": 1e-12,
            "label_smoothing": 0.2,
            "schedule": "warmup",
            "batch_size": 64,
        }
    )
    fit_model(model, digits_small, training, TrialSettings("val_accuracy", "maximize", epochs=1, patience=None), [])
    for b, v in zip(before, backbone.trainable_variables):
        np.testing.assert_allclose(v, b, atol=1e-9)  # backbone at 1e-12: effectively still
    assert np.abs(np.array(model.get_layer("output").kernel) - head_before).max() > 1e-4
    x, y = digits_small.x_val, digits_small.y_val
    p = model.predict(x, verbose=0)
    smoothed = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)(keras.ops.one_hot(y, 10), p)
    assert model.evaluate(x, y, verbose=0)[0] == pytest.approx(float(smoothed), rel=1e-5)


def test_label_smoothing_for_integer_labels():
    rng = np.random.default_rng(0)
    p = keras.ops.softmax(rng.normal(size=(6, 4)).astype("float32"))
    y = np.array([0, 1, 2, 3, 1, 0])
    got = float(smoothed_sparse_crossentropy(0.1)(y, p))
    want = float(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(keras.ops.one_hot(y, 4), p))
    plain = float(keras.losses.SparseCategoricalCrossentropy()(y, p))
    assert got == pytest.approx(want, rel=1e-6) and got != pytest.approx(plain, rel=1e-3)
    assert loss_and_metrics("classification", {"label_smoothing": 0.0}) == (
        "sparse_categorical_crossentropy",
        ["accuracy"],
    )
    loss, _ = loss_and_metrics("classification", {"label_smoothing": 0.1})
    config = keras.saving.serialize_keras_object(loss)  # what a saved model records: stock Keras
    assert (config["module"], config["class_name"]) == ("keras.losses", "SparseCategoricalCrossentropy")
    with pytest.raises(ValueError, match="training.label_smoothing applies to classification, not regression"):
        loss_and_metrics("regression", {"label_smoothing": 0.1})


def test_schedules():
    warm = learning_rate_schedule(
        training_settings({"schedule": "warmup", "learning_rate": 0.01, "warmup_fraction": 0.2}), 100
    )
    rates = np.array([float(warm(s)) for s in range(101)])
    np.testing.assert_allclose(rates[:21], 0.01 * np.arange(1, 22) / 21, rtol=1e-5)  # linear, never 0
    assert np.all(np.diff(rates[20:]) < 0) and rates[-1] == pytest.approx(0, abs=1e-9)  # cosine after
    cosine = learning_rate_schedule(training_settings({"schedule": "cosine", "learning_rate": 0.01}), 50)
    assert float(cosine(0)) == pytest.approx(0.01) and float(cosine(25)) == pytest.approx(0.005)
    assert learning_rate_schedule(training_settings({"learning_rate": 0.01}), 50) == 0.01


def test_optimizers_and_bad_training_settings():
    sgd = make_optimizer(training_settings({"optimizer": "sgd", "momentum": 0.8}), 10)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.8
    adamw = make_optimizer(training_settings({"optimizer": "adamw", "weight_decay": 1e-4}), 10)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(1e-4)
    for bad, message in [
        ({"schedule": "linear"}, "training.schedule must be one of"),
        ({"label_smoothing": 1.0}, r"training.label_smoothing must be in \[0, 1\)"),
        ({"warmup_fraction": -0.1}, r"training.warmup_fraction must be in \[0, 1\)"),
        ({"fine_tune_learning_rate": 0}, "training.fine_tune_learning_rate must be positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            training_settings(bad)


def test_space_check_knows_the_new_training_keys():
    arch = {"d": {"block": "dense", "units": 4}}
    validate_space(
        SearchSpace(
            architecture=arch,
            training={
                "fine_tune_learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
                "label_smoothing": [0.0, 0.1],
                "schedule": ["cosine", "warmup"],
                "warmup_fraction": 0.1,
            },
        )
    )
    with pytest.raises(SpaceError, match="training.fine_tune_lr: unknown training setting"):
        validate_space(SearchSpace(architecture=arch, training={"fine_tune_lr": 1e-4}))


def test_a_regression_target_in_large_units_trains_with_sgd():
    """House prices (standard deviation ~1e5): the loss is the squared error over the training target's
    variance, so SGD steps as on a standardized target. In the target's units its gradients grew
    with the scale squared and the first steps overflowed to NaN (failed trials on california_housing)."""
    from automl.data import make_dataset

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype("float32")
    y = (2e5 + 1e5 * (x @ np.array([1.0, -0.5, 0.3, 0.0])) + 1e4 * rng.normal(size=400)).astype("float32")
    data = make_dataset(x[:300], y[:300], validation_data=(x[300:], y[300:]), task="regression")
    assert data.target_std > 5e4
    keras.utils.set_random_seed(0)
    model = build_model({"h": {"block": "dense", "units": 16}}, data)
    training = training_settings({"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "batch_size": 32})
    history = fit_model(model, data, training, TrialSettings("val_loss", "minimize", epochs=5, patience=None), [])
    val = history.history["val_loss"]
    assert np.all(np.isfinite(val)) and val[-1] < 0.2  # 1.0 is what predicting the training mean scores
    p = model.predict(data.x_val, verbose=0)[:, 0]
    assert val[-1] == pytest.approx(np.mean((p - data.y_val) ** 2) / data.target_std**2, rel=1e-3)
    assert history.history["val_mae"][-1] == pytest.approx(np.mean(np.abs(p - data.y_val)), rel=1e-3)  # its units
    config = keras.saving.serialize_keras_object(model.loss)  # what a saved model records: stock Keras
    assert (config["module"], config["class_name"]) == ("keras.losses", "MeanSquaredError")
