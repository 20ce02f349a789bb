"""The search loop end to end on real Keras, a real Optuna journal and a real MLflow SQLite store."""

import gc
import time
import weakref

import numpy as np
import optuna
import pytest
from conftest import mlflow_runs

from automl import Search
from automl.search import SearchError
from automl.space import Categorical, Float, SearchSpace, SpaceError

TINY = {
    "num_blocks": 1,
    "blocks.0.filters": 4,
    "blocks.0.pooling": "max",
    "pool.mode": "avg",
    "optimizer": "adam",
    "learning_rate": 0.01,
}


def test_trials_become_nested_mlflow_runs_with_params_and_epoch_metrics(digits_small, stores, tiny_space):
    result = Search(tiny_space, study_name="nested", max_trials=3, seed=1, verbose=False, pruner="none", **stores).fit(
        data=digits_small, epochs=3
    )
    client, runs = mlflow_runs(stores["tracking_uri"])
    parents = [r for r in runs if r.data.tags.get("automl.role") == "search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.mlflow_run_id]
    assert len(parents) == 1 and parents[0].info.run_id == result.mlflow_run_id
    experiment = client.get_experiment(parents[0].info.experiment_id)  # the UI opens on its runs table
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert parents[0].info.status == "FINISHED" and parents[0].data.params["data"] == "digits300"
    assert len(children) == 3 == len(runs) - 1
    by_trial = {int(r.data.tags["automl.trial_number"]): r for r in children}
    for trial in result.study.trials:
        run = by_trial[trial.number]
        assert run.info.status == "FINISHED" and run.data.tags["automl.state"] == "COMPLETE"
        assert run.data.params["learning_rate"] == str(trial.params["learning_rate"])
        assert int(run.data.params["num_blocks"]) == trial.params["num_blocks"]
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(trial.user_attrs["epochs_run"]))
        assert run.data.metrics["best_val_accuracy"] == pytest.approx(trial.value)
        assert run.data.metrics["param_count"] > 0 and run.data.metrics["train_seconds"] > 0
    # a conditional parameter is absent from the runs whose condition was false
    for run in children:
        if run.data.params["num_blocks"] == "1":
            assert "blocks.1.filters" not in run.data.params
        if run.data.params["optimizer"] != "sgd":
            assert "momentum" not in run.data.params
    # the best model is on the parent run, and reloads and predicts as the trial scored it
    artifacts = [a.path for a in client.list_artifacts(result.mlflow_run_id, "best_model")]
    assert artifacts == ["best_model/model.keras"]
    model = result.best_model()
    accuracy = float(np.mean(model.predict(digits_small.x_val, verbose=0).argmax(1) == digits_small.y_val))
    assert accuracy == pytest.approx(result.best_value, abs=1e-6)
    assert result.best_params["num_blocks"] == result.best_trial.params["num_blocks"]
    assert list(result.trials["trial"]) == [0, 1, 2]


def test_resume_continues_the_study_and_reuses_the_parent_run(digits_small, stores, tiny_space):
    first = Search(tiny_space, study_name="resume", max_trials=2, seed=3, verbose=False, **stores)
    r1 = first.fit(data=digits_small, epochs=2)
    params_before = [t.params for t in r1.study.trials]
    again = Search(tiny_space, study_name="resume", max_trials=2, seed=3, verbose=False, **stores)
    assert len(again.fit(data=digits_small, epochs=2).study.trials) == 2  # target reached: nothing to do
    r2 = Search(tiny_space, study_name="resume", max_trials=4, seed=3, verbose=False, **stores).fit(
        data=digits_small, epochs=2
    )
    assert [t.number for t in r2.study.trials] == [0, 1, 2, 3]
    assert [t.params for t in r2.study.trials[:2]] == params_before
    assert r2.mlflow_run_id == r1.mlflow_run_id
    _, runs = mlflow_runs(stores["tracking_uri"])
    assert sum(r.data.tags.get("automl.role") == "search" for r in runs) == 1
    assert sum(r.data.tags.get("mlflow.parentRunId") == r1.mlflow_run_id for r in runs) == 4


def test_failing_and_nan_trials_are_recorded_and_the_search_goes_on(digits_small, stores):
    space = SearchSpace(
        name="fragile",
        architecture={
            "blocks": {"repeat": 1, "each": {"block": "conv", "filters": 4, "batch_norm": False}},
            "pool": {"block": "global_pool", "mode": Categorical(choices=["avg", "bogus"])},
        },
        training={"optimizer": "sgd", "learning_rate": Float(low=1e-3, high=1e38, log=True), "momentum": 0.9},
    )
    enqueue = [
        {"pool.mode": "bogus", "learning_rate": 0.01},  # raises in the builder
        {"pool.mode": "avg", "learning_rate": 1e38},  # diverges to NaN
        {"pool.mode": "avg", "learning_rate": 0.01},
        {"pool.mode": "avg", "learning_rate": 0.02},
    ]
    result = Search(
        space, study_name="fragile", max_trials=2, sampler="random", seed=0, verbose=False, enqueue=enqueue, **stores
    ).fit(data=digits_small, epochs=3)
    states = [t.state.name for t in result.study.trials]
    assert states == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    failed = result.study.trials[:2]
    assert "bogus" in failed[0].user_attrs["fail_reason"]
    assert "non-finite" in failed[1].user_attrs["fail_reason"]
    client, runs = mlflow_runs(stores["tracking_uri"])
    trial_runs = {int(r.data.tags["automl.trial_number"]): r for r in runs if "automl.trial_number" in r.data.tags}
    for number in (0, 1):
        assert trial_runs[number].info.status == "FAILED"
        assert trial_runs[number].data.tags["automl.fail_reason"] == failed[number].user_attrs["fail_reason"]
        assert "traceback.txt" in [a.path for a in client.list_artifacts(trial_runs[number].info.run_id)]
    assert result.best_trial.number in (2, 3)


def test_consecutive_failures_stop_the_search_which_fails_without_a_complete_trial(digits_small, stores):
    from automl.errors import NoCompleteTrial

    space = SearchSpace(name="broken", architecture={"pool": {"block": "global_pool", "mode": "bogus"}})
    with pytest.raises(NoCompleteTrial, match="no complete trial; last failure: .*global_pool mode") as failed:
        Search(space, study_name="broken", max_trials=5, max_consecutive_failures=3, verbose=False, **stores).fit(
            data=digits_small, epochs=1
        )
    assert isinstance(failed.value, SearchError)
    assert [t.state.name for t in failed.value.result.study.trials] == ["FAIL"] * 3
    _client, runs = mlflow_runs(stores["tracking_uri"])
    parent = next(r for r in runs if r.data.tags.get("automl.role") == "search")
    assert parent.info.status == "FAILED"


def test_partial_success_returns_the_result(digits_small, stores, tiny_space):
    """One failed trial among complete ones: the search succeeds, the failure is in the table."""
    bad = {"pool.mode": "bogus"}  # global_pool refuses it when the model is built
    result = Search(
        tiny_space, study_name="partial", max_trials=2, verbose=False, pruner="none", enqueue=[bad], **stores
    ).fit(data=digits_small, epochs=2)
    states = [t.state.name for t in result.study.trials]
    assert states[0] == "FAIL" and states.count("COMPLETE") == 2


def test_timeout_stops_the_search(digits_small, stores, tiny_space):
    result = Search(tiny_space, study_name="budget", max_trials=500, timeout=4, verbose=False, **stores).fit(
        data=digits_small, epochs=50
    )
    finished = [t for t in result.study.trials if t.state.is_finished()]
    assert 1 <= len(finished) < 500
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in result.study.trials)


def test_a_timeout_without_max_trials_searches_until_the_time_is_used(digits_small, stores, tiny_space, capsys):
    """A budget alone: the search goes past the 10 trials it runs without one, to the timeout, and
    says so without a trial target; neither given, 10 trials."""
    assert Search(tiny_space).max_trials == 10
    later = Search(tiny_space, timeout=5)
    later.max_trials = 3  # set later (to resume a study for more trials): shown, recorded and obeyed alike
    assert later.trial_cap == later.max_trials == 3
    timeout = 20.0
    started = time.time()
    result = Search(
        tiny_space, study_name="time", timeout=timeout, pruner="none", patience=None, isolate=False, **stores
    ).fit(data=digits_small, epochs=1)
    finished = [t for t in result.study.trials if t.state.is_finished()]
    assert len(finished) > 10, f"{len(finished)} trials in {time.time() - started:.0f} s"
    assert time.time() - started >= timeout  # it stopped at the timeout, not at a trial count
    err = capsys.readouterr().err
    assert "timeout of 20 s is reached" in err and f"| {len(finished)} finished |" in err
    assert "0 trials finished before this run" in err


def test_trials_collect_garbage_on_a_frozen_heap_and_the_search_unfreezes_it(digits_small, stores, tiny_space):
    """Between trials the heap is frozen, so a collection scans only the last trial's objects; the
    trials' own cyclic garbage is still reclaimed, and the search leaves the collector as it found it."""

    class Cycle:
        pass

    frozen, refs = [], []

    def on_trial(study, trial):
        frozen.append(gc.get_freeze_count())
        garbage = Cycle()
        garbage.me = garbage  # only the cycle collector can free it
        refs.append(weakref.ref(garbage))

    assert gc.get_freeze_count() == 0
    Search(
        tiny_space,
        study_name="gc",
        max_trials=3,
        verbose=False,
        pruner="none",
        on_trial=on_trial,
        isolate=False,
        **stores,
    ).fit(data=digits_small, epochs=1)
    assert len(frozen) == 3 and min(frozen) > 0
    assert [r() is None for r in refs[:2]] == [True, True]  # freed by the next trial's clean-up at the latest
    assert gc.get_freeze_count() == 0
    gc.freeze()  # someone else's frozen objects stay frozen
    try:
        Search(tiny_space, study_name="gc", max_trials=4, verbose=False, pruner="none", isolate=False, **stores).fit(
            data=digits_small, epochs=1
        )
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_same_seed_samples_the_same_configurations(digits_small, stores, tiny_space, tmp_path):
    runs = []
    for name in ("a", "b"):
        s = Search(
            tiny_space,
            study_name=f"seed-{name}",
            max_trials=3,
            seed=7,
            verbose=False,
            pruner="none",
            storage=str(tmp_path / f"{name}.journal"),
            tracking_uri=stores["tracking_uri"],
        )
        runs.append([t.params for t in s.fit(data=digits_small, epochs=1).study.trials])
    assert runs[0] == runs[1]


def test_regression_on_diabetes_minimises_val_loss(stores):
    from automl.data import load_data
    from automl.space import Int

    data = load_data("diabetes", seed=0)
    space = SearchSpace(
        name="mlp",
        architecture={"hidden": {"block": "dense", "units": Int(low=8, high=32)}},
        training={"learning_rate": 0.01},
    )
    result = Search(space, max_trials=2, verbose=False, **stores).fit(data=data, epochs=20)
    assert result.study.direction == optuna.study.StudyDirection.MINIMIZE
    model = result.best_model()
    predictions = model.predict(data.x_val, verbose=0)[:, 0]
    mse = float(np.mean((predictions - data.y_val) ** 2))
    # val_loss is the squared error over the training target's variance (training.standardized_mse)
    assert mse / data.target_std**2 == pytest.approx(result.best_value, rel=1e-3)
    assert mse < float(np.var(data.y_val))  # learnt something beyond the mean


def test_resuming_with_another_space_or_data_is_refused(digits_small, stores, tiny_space):
    Search(tiny_space, study_name="guarded", max_trials=1, verbose=False, **stores).fit(data=digits_small, epochs=1)
    other = SearchSpace(name="tiny", architecture={"pool": {"block": "global_pool"}})
    with pytest.raises(SearchError, match="different space"):
        Search(other, study_name="guarded", max_trials=2, verbose=False, **stores).fit(data=digits_small, epochs=1)
    from automl.data import make_dataset

    shifted = make_dataset(digits_small.x_train[:100], digits_small.y_train[:100], kind="image", name="digits300")
    with pytest.raises(SearchError, match="different data"):
        Search(tiny_space, study_name="guarded", max_trials=2, verbose=False, **stores).fit(data=shifted, epochs=1)
    study = optuna.load_study(
        study_name="guarded", storage=__import__("automl.stores").stores.open_storage(stores["storage"])
    )
    assert len(study.trials) == 1  # untouched


def test_space_problems_are_reported_before_any_trial(digits_small, stores):
    bad_block = SearchSpace(architecture={"x": {"block": "convv"}})
    with pytest.raises(SpaceError, match="architecture.x.block: unknown block 'convv'"):
        Search(bad_block, verbose=False, **stores).fit(data=digits_small, epochs=1)
    bad_param = SearchSpace(architecture={"x": {"block": "conv", "filterz": 3}})
    with pytest.raises(SpaceError, match="architecture.x.filterz: not a parameter of block conv"):
        Search(bad_param, verbose=False, **stores).fit(data=digits_small, epochs=1)
    bad_training = SearchSpace(architecture={}, training={"lr": 0.1})
    with pytest.raises(SpaceError, match="training.lr: unknown training setting"):
        Search(bad_training, verbose=False, **stores).fit(data=digits_small, epochs=1)
    with pytest.raises(SpaceError, match="for tabular input but the data is image"):
        Search("tabular_mlp", verbose=False, **stores).fit(data=digits_small, epochs=1)
    with pytest.raises(SearchError, match="objective 'val_top5' is not logged"):
        Search(SearchSpace(architecture={}), objective="val_top5", verbose=False, **stores).fit(
            data=digits_small, epochs=1
        )
    from pathlib import Path

    assert not Path(stores["storage"]).exists()  # nothing was created


def _run_stopping(stopping, logs):
    """Feed `stopping` the epochs' logs on a real tiny model whose weights mark the epoch; returns
    (epochs run, epoch whose weights are restored)."""
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False  # as Model.fit sets it
    stopping.set_model(model)
    stopping.on_train_begin()
    ran = 0
    for epoch, (acc, loss) in enumerate(logs):
        model.set_weights([np.full((1, 1), float(epoch)), np.zeros(1)])
        stopping.on_epoch_end(epoch, {"val_accuracy": acc, "val_loss": loss})
        ran += 1
        if model.stop_training:
            break
    stopping.on_train_end()
    return ran, int(model.get_weights()[0][0, 0])


def test_early_stopping_counts_a_lower_loss_at_an_equal_accuracy_as_progress():
    from automl.training import BestEpochStopping

    # accuracy stuck on the majority class while the loss falls: keeps training, keeps the latest tie
    plateau = [(0.7, 0.69), (0.7, 0.66), (0.7, 0.62), (0.7, 0.60), (0.7, 0.55), (0.85, 0.50)]
    assert _run_stopping(BestEpochStopping("val_accuracy", "maximize", patience=3), plateau) == (6, 5)
    # no progress on either: stops after `patience` epochs, restores the best accuracy
    stalled = [(0.7, 0.6), (0.8, 0.5), (0.8, 0.55), (0.75, 0.4), (0.8, 0.51), (0.9, 0.3)]
    assert _run_stopping(BestEpochStopping("val_accuracy", "maximize", patience=3), stalled) == (5, 1)
    # a lower loss never outranks a higher accuracy
    assert _run_stopping(
        BestEpochStopping("val_accuracy", "maximize", patience=9), [(0.9, 0.6), (0.8, 0.1), (0.85, 0.2)]
    ) == (3, 0)
    # minimising the loss itself: no tie-break, plain patience
    assert _run_stopping(
        BestEpochStopping("val_loss", "minimize", patience=2), [(0.5, 0.6), (0.5, 0.5), (0.9, 0.5), (0.9, 0.7)]
    ) == (4, 1)


def test_best_epoch_is_the_epoch_early_stopping_restores():
    from automl.training import BestEpochStopping, best_epoch

    for logs in (
        [(0.7, 0.69), (0.7, 0.66), (0.8, 0.62), (0.8, 0.55), (0.75, 0.4)],
        [(0.9, 0.6), (0.8, 0.1), (0.9, 0.5), (0.9, 0.7)],
        [(0.5, 0.5), (0.5, 0.5)],
    ):
        history = [{"val_accuracy": a, "val_loss": loss} for a, loss in logs]
        restored = _run_stopping(BestEpochStopping("val_accuracy", "maximize", patience=9), logs)[1]
        assert best_epoch(history, "val_accuracy", "maximize") == restored
    assert best_epoch([{"val_loss": 0.5}, {"val_loss": 0.4}, {"val_loss": 0.45}], "val_loss", "minimize") == 1


def test_trials_with_an_equal_objective_rank_by_validation_loss(stores):
    """Every trial reaches validation accuracy 1.0 on separable blobs; the best trial (and the one
    whose model was kept) is the one with the lowest validation loss, not the first one."""
    from automl.data import make_dataset
    from automl.records import TIEBREAK as TIEBREAK_ATTR

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.5, (80, 2)), rng.normal(3, 0.5, (80, 2))]).astype("float32")
    data = make_dataset(x, np.repeat([0, 1], 80), name="blobs", seed=0)
    space = SearchSpace(
        name="lr",
        architecture={"hidden": {"block": "dense", "units": 8}},
        training={"learning_rate": Categorical(choices=[0.003, 0.03, 0.1])},
    )
    rates = [0.003, 0.03, 0.1]  # slowest first: the first trial to reach 1.0 has the highest loss
    result = Search(
        space,
        max_trials=3,
        pruner="none",
        seed=0,
        enqueue=[{"learning_rate": r} for r in rates],
        verbose=False,
        **stores,
    ).fit(data=data, epochs=6)
    trials = result.study.trials
    assert [t.value for t in trials] == [1.0, 1.0, 1.0]
    losses = [t.user_attrs[TIEBREAK_ATTR] for t in trials]
    lowest = int(np.argmin(losses))
    assert lowest != 0 and len(set(losses)) == 3
    assert result.best_trial.number == lowest
    assert list(result.leaderboard().trial) == sorted(range(3), key=losses.__getitem__)
    model = result.best_model()
    probabilities = model.predict(data.x_val, verbose=0)
    loss = -np.mean(np.log(probabilities[np.arange(len(data.y_val)), data.y_val]))
    assert loss == pytest.approx(losses[lowest], rel=1e-3)


def test_a_space_reads_the_data_as_its_input_kind(stores):
    """`Search(space).fit(x, y)` reads x as the space's input: 2-D arrays as series for a sequence
    space (they were a table: "the space is for sequence input but the data is tabular")."""
    rng = np.random.default_rng(0)
    t = np.arange(24)
    y = np.arange(40) % 2
    x = np.stack([np.sin(2 * np.pi * t / (4 if label else 12) + rng.uniform(0, 6)) for label in y])
    result = Search("sequence_rnn", max_trials=1, seed=0, verbose=False, **stores).fit(x, y, epochs=1)
    assert result.dataset.kind == "sequence" and result.dataset.input_shape == (24, 1)
    assert result.study.trials[0].state.name == "COMPLETE"
