"""Pretraining as a searchable stage (automl.pretraining, issue 21): trials that agree on the pretraining
share one pretraining run, even across processes; the fine-tuned model starts from its weights, holds
no projection head, loads with safe_mode and converts to TFLite; a search without unlabeled data
searches no pretraining, and one with them pretrains its first start configuration."""

import numpy as np
import optuna
import pytest
from conftest import mlflow_runs

PRETRAIN = {"method": "simclr", "epochs": 2, "batch_size": 128, "frozen": 1.0}


def _digits(labelled: int = 200, unlabeled: int = 600):
    from automl.data import load_builtin

    x, y, _ = load_builtin("digits")
    return x[:labelled], y[:labelled], x[labelled : labelled + unlabeled]


def _space(pretrain=None):
    from automl.space import Categorical, SearchSpace

    return SearchSpace(
        name="pretrained",
        architecture={
            "conv": {"block": "conv", "filters": 16, "kernel_size": 3, "pooling": "max"},
            "pool": {"block": "global_pool", "mode": "flatten"},
            "head": {"block": "dense", "units": 32},
        },
        training={"learning_rate": Categorical(choices=[0.003, 0.01, 0.03]), "batch_size": 32},
        pretrain=pretrain,
    )


def test_trials_that_agree_share_one_pretraining_run_and_start_from_its_weights(stores, tmp_path):
    """A process per trial (`isolate=True`): the second trial finds the first one's pretraining through
    MLflow. Every body layer frozen (`frozen: 1.0`): the saved model's body holds exactly the
    pretrained weights, so they were loaded; the model keeps no projection head and converts to TFLite."""
    import keras

    from automl import Search
    from automl.builder import build_model
    from automl.export.model import export_model
    from automl.pretraining import body_of, pretrained_weights

    x, y, x_unlabeled = _digits()
    result = Search(_space(PRETRAIN), max_trials=2, seed=0, isolate=True, verbose=False, **stores).fit(
        x, y, epochs=2, unlabeled=x_unlabeled
    )
    trials = result.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    client, runs = mlflow_runs(stores["tracking_uri"])
    pretrainings = [r for r in runs if r.data.tags.get("automl.role") == "pretrain"]
    assert len(pretrainings) == 1, [r.info.run_name for r in pretrainings]
    run = pretrainings[0]
    assert run.info.run_name.startswith("pretrain-") and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == result.mlflow_run_id
    assert len(client.get_metric_history(run.info.run_id, "pretrain_loss")) == 2
    assert run.data.metrics["unlabeled_samples"] == len(x_unlabeled) + result.dataset.num_train
    assert {t.user_attrs["pretrain_run"] for t in trials} == {run.info.run_id}
    trial_runs = [r for r in runs if r.data.tags.get("automl.role") == "trial"]
    assert {r.data.tags["automl.pretrain_run"] for r in trial_runs} == {run.info.run_id}

    model = result.best_model()  # loaded with safe_mode
    body_weights = body_of(model).get_weights()
    pretrained = pretrained_weights(stores["tracking_uri"], run.info.run_id)
    assert len(body_weights) == len(pretrained) > 0
    assert all(np.array_equal(a, b) for a, b in zip(body_weights, pretrained))
    config = _space(PRETRAIN).sample(optuna.trial.FixedTrial(result.study.best_trial.params))
    fresh = build_model(config.architecture, result.dataset, pretrained=True)
    assert [type(layer).__name__ for layer in model.layers] == [type(layer).__name__ for layer in fresh.layers]
    assert not any("projection" in layer.name or isinstance(layer, keras.Sequential) for layer in model.layers)

    report = export_model(model, tmp_path / "exp", data=result.dataset, formats="float32", latency_runs=3)
    row = report.variants["float32"]
    assert row["status"] == "ok" and row["agreement"] == pytest.approx(1.0), row


def test_fine_tuning_after_pretraining_learns_the_labels(stores):
    """Frozen share 0: the whole model fine-tunes from the pretrained body (its weights move) and learns."""
    from automl import Search
    from automl.pretraining import body_of, pretrained_weights

    x, y, x_unlabeled = _digits(300, 500)
    result = Search(_space({**PRETRAIN, "frozen": 0.0}), max_trials=1, seed=1, isolate=False, verbose=False, **stores)
    result = result.fit(x, y, epochs=6, unlabeled=x_unlabeled)
    trial = result.study.best_trial
    pretrained = pretrained_weights(stores["tracking_uri"], trial.user_attrs["pretrain_run"])
    tuned = body_of(result.best_model()).get_weights()
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(tuned, pretrained))
    predicted = result.best_model().predict(result.dataset.x_val, verbose=0).argmax(1)
    accuracy = float((predicted == result.dataset.y_val).mean())
    assert accuracy > 0.5, accuracy  # 10 classes: chance is 0.1


def test_without_unlabeled_data_no_pretraining_is_searched(stores):
    from automl import Search

    x, y, _ = _digits()
    space = _space({"method": ["none", "simclr"], "epochs": 2})
    result = Search(space, max_trials=2, seed=0, isolate=False, verbose=False, **stores).fit(x, y, epochs=1)
    trials = result.study.get_trials()
    assert all(not any(k.startswith("pretrain.") for k in t.params) for t in trials)
    assert all("pretrain_run" not in t.user_attrs for t in trials)
    _, runs = mlflow_runs(stores["tracking_uri"])
    assert not [r for r in runs if r.data.tags.get("automl.role") == "pretrain"]


def test_the_image_classifier_pretrains_its_first_start_configuration(stores):
    """The task class with `unlabeled=`: the default image space searches the stage, and its first start
    configuration (trial 0) pretrains."""
    from automl import ImageClassifier

    x, y, x_unlabeled = _digits(200, 400)
    clf = ImageClassifier(max_trials=1, seed=0, isolate=False, verbose=False, ensemble=False, **stores)
    clf.fit(x, y, epochs=1, unlabeled=x_unlabeled)
    first = clf.result.study.trials[0]
    assert first.params["pretrain.method"] == "simclr"
    assert first.user_attrs["pretrain_run"]
    assert clf.predict(x[:5]).shape == (5,)


def test_sequence_views_keep_padding_steps_zero():
    import keras

    from automl.pretrain import _Jitter

    x = np.random.default_rng(0).normal(size=(4, 10, 2)).astype("float32")
    x[:, 7:] = 0.0  # padding
    views = keras.ops.convert_to_numpy(_Jitter(0.1, seed=0)(x, training=True))
    real = np.any(views != 0, axis=-1)
    assert real.sum(axis=1).tolist() == [7, 7, 7, 7]  # shifted, but as many real steps and no noise on padding
    assert not np.allclose(views[real], 0.0)


def test_series_of_any_length_pretrain_and_fine_tune(stores):
    """Variable-length labelled and unlabeled series (padded to the training length, masked): a sequence
    search pretrains with jitter-and-shift views and fine-tunes."""
    from automl import Search
    from automl.space import SearchSpace

    rng = np.random.default_rng(0)

    def series(n):
        lengths = rng.integers(20, 41, size=n)
        labels = rng.integers(0, 2, size=n)
        waves = [np.sin(np.arange(k) * (0.3 if c else 1.1)) + 0.1 * rng.normal(size=k) for k, c in zip(lengths, labels)]
        return [w.astype("float32")[:, None] for w in waves], labels

    x, y = series(80)
    x_unlabeled, _ = series(200)
    x_unlabeled = [s[:30] for s in x_unlabeled]  # shorter than the longest training series: padded
    space = SearchSpace(
        {"conv": {"block": "conv1d", "filters": 8, "kernel_size": 5}, "pool": {"block": "global_pool"}},
        {"learning_rate": 0.01, "batch_size": 16},
        pretrain={"method": "simclr", "epochs": 2, "batch_size": 64},
    )
    result = Search(space, max_trials=1, seed=0, isolate=False, verbose=False, **stores)
    result = result.fit(x, y, epochs=3, unlabeled=x_unlabeled)
    assert result.dataset.x_unlabeled.shape == (200, *result.dataset.x_train.shape[1:])
    trial = result.study.best_trial
    assert trial.state.name == "COMPLETE" and trial.user_attrs["pretrain_run"]
    _, runs = mlflow_runs(stores["tracking_uri"])
    assert [r.data.metrics["unlabeled_samples"] for r in runs if r.data.tags.get("automl.role") == "pretrain"] == [
        200 + result.dataset.num_train
    ]


def test_a_pretraining_that_cannot_finish_before_the_deadline_fails_its_trial_at_once():
    import time

    from automl.errors import TrialFailed
    from automl.pretraining import PretrainCache
    from automl.records import TrialSettings

    cache = PretrainCache(data=None, tracker=None)
    cache.durations = [40.0, 60.0]  # this search's pretrainings so far
    with pytest.raises(TrialFailed, match=r"took 50 s on average, \d+ s are left"):
        cache._check_time_left(TrialSettings("val_loss", "minimize", deadline=time.time() + 20))
    cache._check_time_left(TrialSettings("val_loss", "minimize", deadline=time.time() + 80))  # time enough
    cache._check_time_left(TrialSettings("val_loss", "minimize"))  # no deadline: no limit
    # a short trial of the budget schedule: its explore deadline, the earlier one, is what counts
    with pytest.raises(TrialFailed, match="took 50 s on average"):
        cache._check_time_left(
            TrialSettings("val_loss", "minimize", deadline=time.time() + 80, explore_deadline=time.time() + 20)
        )
