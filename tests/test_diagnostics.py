"""A look inside training (automl.diagnostics): per-epoch gradient, weight and activation figures on
the trial's MLflow run, and a diagnosis that names what went wrong."""

import contextlib

import numpy as np
import pytest
from conftest import mlflow_runs

from automl.diagnostics import Diagnostics, diagnose
from automl.space import SearchSpace

DENSE = {"flat": {"block": "global_pool", "mode": "flatten"}, "hidden": {"block": "dense", "units": 256, "depth": 2}}


def test_a_huge_learning_rate_is_diagnosed_as_diverged(digits_small, stores):
    import optuna

    from automl import Search
    from automl.errors import NoCompleteTrial
    from automl.stores import open_storage

    space = SearchSpace(DENSE, {"optimizer": "sgd", "learning_rate": 1e6, "momentum": 0.9})
    search = Search(space, study_name="boom", max_trials=1, seed=0, verbose=False, isolate=False, **stores)
    with contextlib.suppress(NoCompleteTrial):  # the loss blows up: to NaN (the trial fails), or a dead net
        search.fit(data=digits_small, epochs=4)
    trial = optuna.load_study(study_name="boom", storage=open_storage(stores["storage"])).trials[0]  # failures retry
    assert trial.user_attrs["diagnosis"].startswith("diverged"), trial.user_attrs["diagnosis"]
    _, runs = mlflow_runs(stores["tracking_uri"])
    run = next(r for r in runs if r.data.tags.get("automl.trial_number") == "0")
    assert run.data.tags["automl.diagnosis"] == trial.user_attrs["diagnosis"]


def test_a_big_net_on_tiny_data_is_diagnosed_as_overfitting_with_its_figures_logged(digits_small, stores):
    from automl import Search
    from automl.data import make_dataset

    tiny = make_dataset(
        digits_small.x_train[:40], digits_small.y_train[:40], validation_data=(digits_small.x_val, digits_small.y_val)
    )
    space = SearchSpace(DENSE, {"learning_rate": 1e-2, "batch_size": 8})
    result = Search(space, study_name="overfit", max_trials=1, patience=None, seed=0, verbose=False, **stores).fit(
        data=tiny, epochs=25
    )
    trial = result.study.trials[0]
    assert trial.user_attrs["diagnosis"].startswith("overfitting from epoch"), trial.user_attrs["diagnosis"]
    epoch = int(trial.user_attrs["diagnosis"].split()[-1])
    assert 2 <= epoch < 25
    client, runs = mlflow_runs(stores["tracking_uri"])
    (run,) = [r for r in runs if r.data.tags.get("automl.role") == "trial"]
    grads = client.get_metric_history(run.info.run_id, "grad_global_norm")
    steps = sorted(g.step for g in grads)  # short epochs are sampled to keep within 3 % of training time
    assert steps[0] == 0 and steps[-1] <= 24 and all(g.value > 0 for g in grads)
    for prefix in ("grad_norm/", "weight_norm/", "update_ratio/", "act_mean/", "act_std/", "dead_units/"):
        assert sum(k.startswith(prefix) for k in run.data.metrics) == 3, prefix  # two hidden layers and the head
    assert run.data.metrics["lr"] == pytest.approx(1e-2)
    # their own time is timed and logged: it is part of the trial's, and the sampled epochs keep it small
    assert 0 < run.data.metrics["diagnostics_seconds"] < 0.5 * run.data.metrics["train_seconds"]


def test_dead_units_and_vanishing_gradients_are_found():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,))
    h = keras.layers.Dense(32, activation="relu", bias_initializer=keras.initializers.Constant(-100.0), name="dead")(
        inputs
    )
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).random((64, 16)).astype("float32"), np.arange(64) % 3
    probe = Diagnostics(x=x, y=y)
    model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[probe])
    assert not hasattr(probe._traced, "get_concrete_function")  # no recurrence: eager (tracing costs more)
    last = probe.records[-1]
    assert last["dead_units/dead"] == 1.0 and last["grad_norm/dead"] == 0.0 and last["grad_norm/out"] > 0
    assert last["lr"] == pytest.approx(1e-3)
    assert "dead units (100% in dead)" in diagnose([{"loss": 1.1, "val_loss": 1.1}] * 3, probe.records)
    assert "vanishing gradients" in diagnose([{"loss": 1.1}] * 3, [{"grad_norm/a": 1e-9, "grad_norm/b": 1.0}])


def test_a_recurrent_nets_figures_are_measured_by_a_traced_function_and_match_eager_ones():
    """Measured eagerly, a 1460-step LSTM's probe took 24 s of a 32 s trial (three times its
    training): the passes are traced once per model, with the same figures as eager ones."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((200, 1))
    h = keras.layers.LSTM(8, name="rnn")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).normal(size=(40, 200, 1)).astype("float32"), np.arange(40) % 3
    probe = Diagnostics(x=x, y=y)
    model.fit(x, y, epochs=1, batch_size=20, verbose=0, callbacks=[probe])
    assert isinstance(probe._traced, tf.types.experimental.PolymorphicFunction)  # not the eager fallback
    figures = probe.records[-1]
    with tf.GradientTape() as tape:  # the same figures by hand, eagerly, on the weights they were measured at
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y[:32], model(x[:32], training=False)))
    grads = tape.gradient(loss, model.layers[1].trainable_weights)
    assert figures["grad_norm/rnn"] == pytest.approx(float(tf.linalg.global_norm(grads)), rel=1e-4)
    hidden = keras.Model(inputs, h)(x[:32])
    assert figures["act_mean/rnn"] == pytest.approx(float(np.mean(hidden)), rel=1e-4, abs=1e-6)


def test_diagnose_underfitting_and_healthy():
    flat = [{"loss": 1.0, "accuracy": 0.4, "val_loss": 1.0, "val_accuracy": 0.41}] * 4
    assert diagnose(flat, [{"grad_global_norm": 1.0}]) == "underfitting"
    learning = [
        {"loss": 1.0 - 0.2 * i, "accuracy": 0.7 + 0.07 * i, "val_loss": 1.0 - 0.2 * i, "val_accuracy": 0.7 + 0.06 * i}
        for i in range(4)
    ]
    assert diagnose(learning, [{"grad_global_norm": 1.0}]) == "healthy"
    exploding = diagnose(learning, [{"grad_global_norm": 1e6}])
    assert exploding == "exploding gradients"


def test_diagnostics_off_logs_no_figures(digits_small, stores, tiny_space):
    from automl import Search

    result = Search(tiny_space, study_name="off", max_trials=1, diagnostics=False, verbose=False, **stores).fit(
        data=digits_small, epochs=1
    )
    assert "diagnosis" not in result.study.trials[0].user_attrs
    _, runs = mlflow_runs(stores["tracking_uri"])
    (run,) = [r for r in runs if r.data.tags.get("automl.role") == "trial"]
    assert "grad_global_norm" not in run.data.metrics and "diagnostics_seconds" not in run.data.metrics


def test_a_mixed_table_trains_on_cached_columns_and_is_still_looked_inside(stores):
    """The columns' preprocessing is cached (a sub-model sharing the model's layers trains): the probe
    feeds it the cached inputs and taps the shared layers' outputs in its own graph."""
    import pandas as pd

    from automl import Search

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=200), "b": rng.choice(["x", "y"], 200), "c": rng.random(200)})
    x.loc[x.index % 7 == 0, "c"] = np.nan
    result = Search("tabular_mlp", study_name="mixed", max_trials=1, verbose=False, **stores).fit(
        x, (x.a > 0).astype(int).to_numpy(), epochs=2
    )
    client, runs = mlflow_runs(stores["tracking_uri"])
    (run,) = [r for r in runs if r.data.tags.get("automl.role") == "trial"]
    assert any(k.startswith("act_mean/") for k in run.data.metrics) and "grad_global_norm" in run.data.metrics
    assert "diagnostics_error.txt" not in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert result.study.trials[0].user_attrs["diagnosis"]
