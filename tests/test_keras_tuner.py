"""KerasTuner compatibility on real Keras, real KerasTuner tuners, a real Optuna journal and MLflow SQLite."""

import math
import os

import keras
import keras_tuner as kt
import numpy as np
import optuna
import pytest
from conftest import mlflow_runs

from automl import Search
from automl.keras_tuner import OptunaHyperParameters
from automl.search import SearchError

EPOCHS = 4


@pytest.fixture(scope="module")
def digits_arrays():
    """300 8x8 digits as a KerasTuner user has them: (n, 8, 8) in 0..1, integer labels, own split."""
    from automl.data import load_builtin

    x, y, _ = load_builtin("digits")
    x, y = x[:300, :, :, 0] / 16.0, y[:300]
    return x[:240], y[:240], x[240:], y[240:]


def build_model(hp):
    """A KerasTuner build function as users write it: a model family chosen by `kind`, each family's
    parameters in its own conditional and name scope."""
    inputs = keras.Input((8, 8))
    h = keras.layers.Flatten()(inputs)
    kind = hp.Choice("kind", ["mlp", "wide"])
    activation = hp.Fixed("activation", "relu")
    with hp.conditional_scope("kind", ["mlp"]), hp.name_scope("mlp"):
        if kind == "mlp":
            for i in range(hp.Int("layers", 1, 2)):
                h = keras.layers.Dense(hp.Int(f"units_{i}", 16, 48, step=16), activation=activation)(h)
    with hp.conditional_scope("kind", ["wide"]), hp.name_scope("wide"):
        if kind == "wide":
            h = keras.layers.Dense(hp.Int("width", 32, 128, sampling="log"), activation=activation)(h)
            if hp.Boolean("dropout"):
                h = keras.layers.Dropout(0.2)(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile(
        keras.optimizers.Adam(hp.Float("lr", 1e-5, 3e-2, sampling="log")),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def test_a_keras_tuner_build_function_runs_under_search_with_tpe_and_a_pruner(digits_arrays, stores):
    x, y, x_val, y_val = digits_arrays
    enqueue = [
        {"kind": "mlp", "mlp/layers": 2, "lr": 0.01},
        {"kind": "wide", "lr": 0.01},
        {"kind": "mlp", "mlp/layers": 1, "lr": 0.01},
        {"kind": "wide", "lr": 1e-5},
    ]  # learns nothing: the median pruner stops it
    result = Search(
        hypermodel=build_model,
        study_name="kt-build",
        max_trials=5,
        seed=0,
        sampler="tpe",
        pruner="median",
        patience=None,
        enqueue=enqueue,
        verbose=False,
        **stores,
    ).fit(x, y, validation_data=(x_val, y_val), epochs=EPOCHS)
    trials = result.study.trials
    assert result.study.user_attrs["objective"] == "val_accuracy"  # from the model's compiled metrics
    assert [t.state.name for t in trials[:4]] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    assert len(trials) == 5 and trials[4].state.is_finished()
    for t in trials:
        params, recorded = t.params, t.user_attrs["params"]
        # the inactive conditional scope's parameters are never sampled nor recorded
        active, inactive = ("mlp/", "wide/") if params["kind"] == "mlp" else ("wide/", "mlp/")
        assert not any(k.startswith(inactive) for k in params) and not any(k.startswith(inactive) for k in recorded)
        assert any(k.startswith(active) for k in params)
        if params["kind"] == "mlp":
            assert ("mlp/units_1" in params) == (params["mlp/layers"] == 2)
            assert params["mlp/units_0"] in (16, 32, 48)  # KerasTuner's step grid
        else:
            assert 32 <= params["wide/width"] <= 128 and isinstance(params["wide/dropout"], bool)
        assert recorded == {**params, "activation": "relu"}  # a Fixed value is recorded, not searched
        assert sorted(t.intermediate_values) == list(range(t.user_attrs["epochs_run"]))  # what the pruner saw
    assert trials[3].user_attrs["epochs_run"] < EPOCHS

    client, runs = mlflow_runs(stores["tracking_uri"])
    children = {
        int(r.data.tags["automl.trial_number"]): r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == result.mlflow_run_id
    }
    assert sorted(children) == [t.number for t in trials]
    for t in trials:
        run = children[t.number]
        assert run.data.params == {k: str(v) for k, v in t.user_attrs["params"].items()}
        assert run.data.tags["automl.state"] == t.state.name
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(t.user_attrs["epochs_run"]))
        assert [m.value for m in history] == pytest.approx([t.intermediate_values[m.step] for m in history])

    model = result.best_model()
    accuracy = float(np.mean(model.predict(x_val, verbose=0).argmax(1) == y_val))
    assert accuracy == pytest.approx(result.best_value, abs=1e-6)
    assert result.best_value > 0.5


class TunedFit(kt.HyperModel):
    """A HyperModel whose fit samples its own hyperparameters, as in KerasTuner's documentation."""

    def __init__(self):
        super().__init__()
        self.fit_calls = []

    def build(self, hp):
        model = keras.Sequential(
            [
                keras.Input((8, 8)),
                keras.layers.Flatten(),
                keras.layers.Dense(hp.Int("units", 16, 32, step=16), activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, x, y, **kwargs):
        batch_size = hp.Choice("batch_size", [16, 64])
        self.fit_calls.append({"batch_size": batch_size, "x": x, **kwargs})
        return model.fit(x, y, batch_size=batch_size, **kwargs)


def test_a_hypermodel_with_a_custom_fit_samples_in_fit_and_gets_fit_kwargs(digits_arrays, stores):
    x, y, x_val, _y_val = digits_arrays
    hypermodel = TunedFit()
    result = Search(
        hypermodel=hypermodel,
        fit_kwargs={"shuffle": False},
        study_name="kt-fit",
        max_trials=3,
        seed=1,
        sampler="random",
        verbose=False,
        **stores,
    ).fit(x, y, validation_split=0.25, epochs=2)
    trials = result.study.trials
    assert len(hypermodel.fit_calls) == 3
    for t, call in zip(trials, hypermodel.fit_calls):
        assert t.params["batch_size"] == call["batch_size"]  # sampled inside fit, by the Optuna trial
        assert call["epochs"] == 2 and call["shuffle"] is False and call["validation_data"][0].shape == (60, 8, 8)
        assert call["x"].shape == (180, 8, 8)  # the user's arrays, not reshaped for our own builder
    _, runs = mlflow_runs(stores["tracking_uri"])
    logged = {
        int(r.data.tags["automl.trial_number"]): r.data.params for r in runs if "automl.trial_number" in r.data.tags
    }
    assert [logged[t.number]["batch_size"] for t in trials] == [str(t.params["batch_size"]) for t in trials]
    assert result.best_model().predict(x_val[:4], verbose=0).shape == (4, 10)


class CustomLoop(kt.HyperModel):
    """A HyperModel whose fit does not report epochs through callbacks: its returned metrics count."""

    def build(self, hp):
        model = keras.Sequential(
            [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
        )
        model.compile(
            keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def fit(self, hp, model, x, y, validation_data, epochs, **kwargs):
        model.fit(x, y, epochs=epochs, verbose=0)
        loss, accuracy = model.evaluate(*validation_data, verbose=0)
        return {"val_accuracy": accuracy, "val_loss": loss, "marker": 7.0}


def test_a_custom_fit_that_returns_metrics_is_scored_by_them(digits_arrays, stores):
    x, y, x_val, y_val = digits_arrays
    result = Search(hypermodel=CustomLoop(), study_name="kt-loop", max_trials=2, seed=0, verbose=False, **stores).fit(
        x, y, validation_data=(x_val, y_val), epochs=1
    )
    _client, runs = mlflow_runs(stores["tracking_uri"])
    for t in result.study.trials:
        run = next(r for r in runs if r.data.tags.get("automl.trial_number") == str(t.number))
        assert t.state.name == "COMPLETE" and run.data.metrics["marker"] == 7.0
        assert run.data.metrics["val_accuracy"] == pytest.approx(t.value)
    model = result.best_model()
    assert float(np.mean(model.predict(x_val, verbose=0).argmax(1) == y_val)) == pytest.approx(
        result.best_value, abs=1e-6
    )


def test_hp_adapter_maps_keras_tuner_ranges_to_optuna_distributions():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    D = optuna.distributions
    for _ in range(25):
        trial = study.ask()
        hp = OptunaHyperParameters(trial)
        assert isinstance(hp, kt.HyperParameters)
        values = {
            "linear": hp.Int("linear", 1, 10, step=4),  # 1, 5, 9
            "log_int": hp.Int("log_int", 2, 40, sampling="log"),
            "log_step": hp.Int("log_step", 2, 32, step=2, sampling="log"),  # 2, 4, ..., 32
            "reverse": hp.Float("reverse", 0.1, 1.0, sampling="reverse_log"),
            "f_step": hp.Float("f_step", 0.0, 1.0, step=0.25),
            "choice": hp.Choice("choice", ["a", "b"]),
            "flag": hp.Boolean("flag"),
            "fixed": hp.Fixed("fixed", 3),
        }
        with hp.conditional_scope("choice", ["b"]):
            only_b = hp.Int("only_b", 0, 5)
        assert (only_b is None) == (values["choice"] == "a")
        assert ("only_b" in hp) == (values["choice"] == "b") and ("only_b" in trial.params) == (values["choice"] == "b")
        assert hp.get("linear") == values["linear"] and hp.values["fixed"] == 3 and "fixed" not in trial.params
        assert values["linear"] in (1, 5, 9) and values["log_step"] in (2, 4, 8, 16, 32)
        assert 2 <= values["log_int"] <= 40 and 0.1 <= values["reverse"] <= 1.0
        assert values["f_step"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert math.isclose(values["reverse"], 1.1 - trial.params["reverse:mirror"])
        study.tell(trial, 0.0)
    dist = study.trials[-1].distributions
    assert dist["linear"] == D.IntDistribution(1, 9, step=4)
    assert dist["log_int"] == D.IntDistribution(2, 40, log=True)
    assert dist["log_step"] == D.CategoricalDistribution([2, 4, 8, 16, 32])
    assert dist["reverse:mirror"] == D.FloatDistribution(0.1, 1.0, log=True)
    assert dist["flag"] == D.CategoricalDistribution([False, True])
    seen = {(t.params["choice"], t.params["flag"]) for t in study.trials}
    assert len(seen) == 4  # every combination came up: the values are sampled, not KerasTuner defaults


def test_bad_hypermodels_and_settings_fail_before_any_trial(digits_arrays, stores):
    from pathlib import Path

    x, y, *_ = digits_arrays

    def uncompiled(hp):
        return keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])

    def broken(hp):
        with hp.conditional_scope("missing", ["a"]):
            return build_model(hp)

    with pytest.raises(SearchError, match="uncompiled model"):
        Search(hypermodel=uncompiled, verbose=False, **stores).fit(x, y, epochs=1)
    with pytest.raises(SearchError, match="building with default values failed: ValueError: .*missing"):
        Search(hypermodel=broken, verbose=False, **stores).fit(x, y, epochs=1)
    with pytest.raises(SearchError, match="objective 'val_auc' is not logged"):
        Search(hypermodel=build_model, objective="val_auc", verbose=False, **stores).fit(x, y, epochs=1)
    assert not Path(stores["storage"]).exists()
    with pytest.raises(SearchError, match="not both"):
        Search("image_cnn", hypermodel=build_model)
    with pytest.raises(SearchError, match="epochs are passed by the search"):
        Search(hypermodel=build_model, fit_kwargs={"epochs": 3})
    with pytest.raises(SearchError, match="cannot be combined with a hypermodel"):
        Search(hypermodel=build_model, sampler="kt-hyperband")
    with pytest.raises(SearchError, match="hypermodel must be a keras_tuner.HyperModel"):
        Search(hypermodel=42)
    with pytest.raises(ValueError, match="kt-grid"):
        Search("image_cnn", sampler="kt-grid")


@pytest.mark.parametrize("tuner", ["kt-random", "kt-bayesian"])
def test_keras_tuner_tuners_search_a_yaml_space(tuner, digits_small, stores, tiny_space):
    result = Search(
        tiny_space, sampler=tuner, study_name=tuner, max_trials=3, seed=0, pruner="none", verbose=False, **stores
    ).fit(data=digits_small, epochs=2)
    trials = result.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    # each trial is one of KerasTuner's: its oracle proposed the values
    assert [t.user_attrs["keras_tuner_trial"] for t in trials] == ["00000", "00001", "00002"]
    for t in trials:  # the tuner samples every parameter; only the active ones are used and logged
        assert ("momentum" in t.params) == (t.params["optimizer"] == "sgd")
        assert ("blocks.1.filters" in t.params) == (t.params["num_blocks"] == 2)
    _check_runs_and_model(result, stores, digits_small, tuner, "none")


def test_keras_tuner_hyperband_trains_promoted_configurations_on_from_their_weights(
    digits_small, stores, tiny_space, monkeypatch
):
    import automl.keras_tuner

    class WeightsAtTrainStart(automl.keras_tuner.TunerRunner):
        """The real runner; it also keeps each trial's model and weights as training starts and ends."""

        trial_number, models, at_start, at_end = None, {}, {}, {}

        def run(self, trial, config):
            self.trial_number = trial.number
            return super().run(trial, config)

        def train(self, model, training, monitor):
            self.models[self.trial_number] = model
            self.at_start[self.trial_number] = [w.copy() for w in model.get_weights()]
            super().train(model, training, monitor)
            self.at_end[self.trial_number] = [w.copy() for w in model.get_weights()]

    monkeypatch.setattr(automl.keras_tuner, "TunerRunner", WeightsAtTrainStart)
    # max_epochs 3, factor 3: three configurations train 1 epoch, the best goes on to epoch 3
    result = Search(
        tiny_space, sampler="kt-hyperband", study_name="hb", max_trials=4, seed=0, verbose=False, **stores
    ).fit(data=digits_small, epochs=3)
    trials = result.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert [t.user_attrs["epochs_run"] for t in trials] == [1, 1, 1, 2]
    first_round = {t.user_attrs["keras_tuner_trial"]: t for t in trials[:3]}
    promoted = trials[3]
    parent = first_round[promoted.user_attrs["tuner/trial_id"]]
    assert promoted.user_attrs["warm_started_from"] == parent.user_attrs["keras_tuner_trial"]
    assert promoted.params == parent.params
    assert parent.value == max(t.value for t in trials[:3])  # Hyperband promoted the round's best

    # the promoted trial starts from the weights its parent's round saved in KerasTuner's trial folder
    parent_dir = result.study.sampler.tuner.get_trial_dir(parent.user_attrs["keras_tuner_trial"])
    checkpoint = os.path.join(parent_dir, "checkpoint.weights.h5")
    from_file = keras.models.clone_model(WeightsAtTrainStart.models[promoted.number])
    from_file.load_weights(checkpoint)
    saved = from_file.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, WeightsAtTrainStart.at_end[parent.number]))
    start = WeightsAtTrainStart.at_start[promoted.number]
    assert len(start) == len(saved) and all(np.array_equal(a, b) for a, b in zip(start, saved))
    # ... which are not what a fresh model of the same configuration starts from
    assert not all(np.array_equal(a, b) for a, b in zip(WeightsAtTrainStart.at_start[parent.number], saved))
    _check_runs_and_model(result, stores, digits_small, "kt-hyperband", "none")  # Hyperband prunes itself


def _check_runs_and_model(result, stores, data, sampler, pruner):
    client, runs = mlflow_runs(stores["tracking_uri"])
    children = {
        int(r.data.tags["automl.trial_number"]): r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == result.mlflow_run_id
    }
    assert sorted(children) == [t.number for t in result.study.trials]
    for t in result.study.trials:
        run = children[t.number]
        sampled = {k: str(v) for k, v in t.params.items()}  # fixed values are logged too
        assert {k: run.data.params.get(k) for k in sampled} == sampled
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(t.user_attrs["epochs_run"]))
    parent = next(r for r in runs if r.info.run_id == result.mlflow_run_id)
    assert parent.data.params["sampler"] == sampler and parent.data.params["pruner"] == pruner
    model = result.best_model()
    accuracy = float(np.mean(model.predict(data.x_val, verbose=0).argmax(1) == data.y_val))
    assert accuracy == pytest.approx(result.best_value, abs=1e-6)


def test_keras_tuner_keeps_a_one_of_value_in_the_range_its_conditions_pick():
    """KerasTuner declares each name once (over every alternative's range); building a trial keeps the
    value within the alternative that the trial's optimiser picks, as Optuna's sampling does."""
    from automl.keras_tuner import SpaceHyperModel
    from automl.space import load_space

    model = SpaceHyperModel(load_space("image_cnn"))
    declared = kt.HyperParameters()
    model.declare_hyperparameters(declared)
    assert declared.get("learning_rate") == pytest.approx(1e-4)  # the union's low end
    seen = {"sgd": [], "other": []}
    for seed in range(60):  # what KerasTuner's random oracle does: a random value for every declared name
        hp = kt.HyperParameters()
        model.declare_hyperparameters(hp)
        for j, param in enumerate(hp.space):
            hp.values[param.name] = param.random_sample(seed * 1000 + j)
        training = model.build(hp).training
        seen["sgd" if training["optimizer"] == "sgd" else "other"].append(training["learning_rate"])
    assert 1e-3 <= min(seen["sgd"]) < 3e-3 and 3e-2 < max(seen["sgd"]) <= 1e-1  # SGD's range, covered
    assert 1e-4 <= min(seen["other"]) < 3e-4 and 3e-3 < max(seen["other"]) <= 1e-2  # Adam's
    assert len(set(seen["sgd"])) == len(seen["sgd"])  # spread over the range, not piled on its edges


def test_the_readme_build_function_runs_as_written(digits_arrays, stores):
    """README's KerasTuner example, copied from the file: KerasTuner's own `sampling="log"`, and a
    Sequential without `keras.Input` (built on its first batch, as KerasTuner's fit builds it)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("### KerasTuner, both ways", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    definition, call = block.split("\n\n\nresult = ", 1)
    assert "hypermodel=build_model" in call
    namespace: dict = {"keras": keras}
    exec(definition, namespace)
    x, y, x_val, y_val = digits_arrays
    result = Search(
        hypermodel=namespace["build_model"], study_name="readme-kt", max_trials=2, seed=0, verbose=False, **stores
    ).fit(x, y, validation_data=(x_val, y_val), epochs=3)
    assert [t.state.name for t in result.study.trials] == ["COMPLETE", "COMPLETE"]
    accuracy = float(np.mean(result.best_model().predict(x_val, verbose=0).argmax(axis=1) == y_val))
    assert accuracy > 0.5, accuracy  # ten classes: it learned
