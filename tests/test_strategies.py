"""Search strategies on real tiny searches: every sampler and pruner, budgets, several objectives with
measured TFLite cost, constraints, warm starts. Real Keras, a real Optuna journal, a real MLflow store."""

import importlib.util
import re
import sys

import numpy as np
import optuna
import pytest
from conftest import mlflow_runs, require

from automl import Search
from automl.ranking import dominates, leaderboard_trials
from automl.records import COPIED_FROM as COPIED_ATTR
from automl.space import Categorical, Int, SearchSpace
from automl.strategies import StrategyError, make_pruner, make_sampler

GOOD = {"num_blocks": 1, "blocks.0.filters": 8, "optimizer": "adam", "learning_rate": 0.02}
BAD = {**GOOD, "learning_rate": 1e-6}  # trains nowhere: a pruner must stop it
SMALL = {"num_blocks": 1, "blocks.0.filters": 4, "optimizer": "adam", "learning_rate": 0.02}  # ~90 weights
LARGE = {
    "num_blocks": 2,
    "blocks.0.filters": 8,
    "blocks.1.filters": 8,
    "optimizer": "adam",  # ~750 weights
    "learning_rate": 0.02,
}


@pytest.fixture
def discrete_space():
    """A small all-discrete space (grid-able), with a conditional block and a learning rate that can fail."""
    return SearchSpace(
        name="discrete",
        architecture={
            "blocks": {
                "repeat": Int(low=1, high=2),
                "each": {"block": "conv", "filters": Categorical(choices=[4, 8]), "kernel_size": 3, "pooling": "max"},
            },
            "pool": {"block": "global_pool", "mode": "flatten"},
        },
        training={
            "optimizer": Categorical(choices=["adam"]),
            "learning_rate": Categorical(choices=[0.02, 0.005, 1e-6]),
            "batch_size": 16,
        },
    )


SAMPLER_CLASSES = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
    "nsga2": "NSGAIISampler",
    "gp": "GPSampler",
}


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "qmc", "nsga2"])
def test_each_sampler_runs_a_real_search_reproducibly(sampler, digits_small, stores, tiny_space, tmp_path):
    sequences = []
    for copy in ("a", "b"):  # same seed, another storage: the same configurations in the same order
        result = Search(
            tiny_space,
            study_name=f"{sampler}-{copy}",
            sampler=sampler,
            pruner="none",
            seed=11,
            max_trials=4,
            verbose=False,
            storage=str(tmp_path / f"{copy}.journal"),
            tracking_uri=stores["tracking_uri"],
        ).fit(data=digits_small, epochs=1)
        trials = result.study.trials
        assert [t.state.name for t in trials] == ["COMPLETE"] * 4
        assert type(result.study.sampler).__name__ == SAMPLER_CLASSES[sampler]
        sequences.append([t.params for t in trials])
    assert sequences[0] == sequences[1]
    assert len({str(p) for p in sequences[0]}) > 1  # it does sample, not repeat one point
    _, runs = mlflow_runs(stores["tracking_uri"])
    parents = [r for r in runs if r.data.tags.get("automl.role") == "search"]
    assert {r.data.params["sampler"] for r in parents} == {sampler}


def test_tpe_random_draws_every_third_trial_regardless_of_the_history_and_models_the_others():
    """Two studies, same seed, opposite objectives: the random turns (trials 2, 5, 8, ...) propose the
    same points whatever came before; after the start-up trials the model's turns follow their own
    objective (x high when maximising x, low when minimising it)."""

    def run(direction):
        study = optuna.create_study(direction=direction, sampler=make_sampler("tpe-random", seed=3, max_trials=60))
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0) + 0.0 * t.suggest_int("k", 0, 9), n_trials=45)
        return [t.params["x"] for t in study.trials]

    up, down = run("maximize"), run("minimize")
    random_turns = [n for n in range(45) if n % 3 == 2]
    assert [up[n] for n in random_turns] == [down[n] for n in random_turns]
    assert np.std([up[n] for n in random_turns]) > 0.2  # spread over the range, not drawn to either end
    model_turns = [n for n in range(30, 45) if n % 3 != 2]
    assert np.mean([up[n] for n in model_turns]) > 0.75 > 0.25 > np.mean([down[n] for n in model_turns])


def test_grid_visits_every_combination_once(digits_small, stores, discrete_space):
    # 1 block: 2 filters x 3 rates; 2 blocks: 4 filter pairs x 3 rates -> the grid of all parameters is 24
    grid = make_sampler("grid", space=discrete_space)._search_space
    assert {k: len(v) for k, v in grid.items()} == {
        "num_blocks": 2,
        "blocks.0.filters": 2,
        "blocks.1.filters": 2,
        "optimizer": 1,
        "learning_rate": 3,
    }
    small = SearchSpace(
        name="g",
        architecture={"pool": {"block": "global_pool", "mode": "avg"}},
        training={
            "learning_rate": Categorical(choices=[0.02, 0.005, 0.001]),
            "optimizer": Categorical(choices=["adam", "sgd"]),
            "batch_size": 64,
        },
    )
    result = Search(
        small, study_name="grid", sampler="grid", pruner="none", max_trials=6, seed=0, verbose=False, **stores
    ).fit(data=digits_small, epochs=1)
    seen = sorted((t.params["learning_rate"], t.params["optimizer"]) for t in result.study.trials)
    assert seen == sorted((lr, o) for lr in (0.02, 0.005, 0.001) for o in ("adam", "sgd"))


def test_grid_refuses_a_continuous_space(tiny_space):
    with pytest.raises(StrategyError, match="learning_rate"):
        make_sampler("grid", space=tiny_space)
    with pytest.raises(StrategyError, match="unknown sampler 'bogus'"):
        Search(tiny_space, sampler="bogus")


class _NoTorch:
    """Import hook for which PyTorch is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}")


def test_gp_without_torch_says_how_to_install(digits_small, stores, tiny_space, monkeypatch):
    # PyTorch hidden rather than the test skipped where it is installed (as under CI)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoTorch(), *sys.meta_path])
    with pytest.raises(StrategyError, match=r"pip install 'automl\[gp\]'"):
        Search(tiny_space, sampler="gp", max_trials=2, verbose=False, **stores).fit(data=digits_small, epochs=1)


def test_gp_sampler_runs_a_real_search(digits_small, stores, tiny_space):
    require(importlib.util.find_spec("torch"), "needs the gp extra (PyTorch): pip install 'automl[gp]'")
    result = Search(tiny_space, sampler="gp", pruner="none", max_trials=4, seed=0, verbose=False, **stores).fit(
        data=digits_small, epochs=1
    )
    assert [t.state.name for t in result.study.trials] == ["COMPLETE"] * 4


# Pruners: good configurations first, then two that cannot learn; each pruner must stop those early
# (Hyperband spreads trials over brackets, so it gets more good ones to compare with). All distinct:
# an enqueued configuration that is already in the study is skipped.
GOODS = [{**GOOD, "blocks.0.filters": f, "learning_rate": lr} for lr in (0.02, 0.005) for f in (8, 4)] + [
    {**GOOD, "num_blocks": 2, "blocks.0.filters": 8, "blocks.1.filters": f} for f in (8, 4)
]
BADS = [BAD, {**BAD, "blocks.0.filters": 4}]


@pytest.mark.parametrize(
    "pruner, goods", [("median", 3), ("percentile", 3), ("successive-halving", 3), ("hyperband", 6), ("patient", 3)]
)
def test_each_pruner_stops_hopeless_trials_and_mlflow_shows_where(pruner, goods, digits_small, stores, discrete_space):
    plan = GOODS[:goods] + BADS
    result = Search(
        discrete_space,
        study_name=f"prune-{pruner}",
        pruner=pruner,
        max_trials=len(plan),
        enqueue=plan,
        seed=0,
        patience=None,
        verbose=False,
        **stores,
    ).fit(data=digits_small, epochs=5)
    trials = result.study.trials
    assert [t.params["learning_rate"] for t in trials] == [p["learning_rate"] for p in plan]
    hopeless = trials[goods:]
    if pruner == "patient":  # PatientPruner defers to the median only after 2 epochs without progress:
        assert all(t.user_attrs["epochs_run"] >= 3 for t in hopeless)  # the median alone stops these at 2
    else:
        assert [t.state.name for t in hopeless] == ["PRUNED", "PRUNED"]
    assert trials[0].state.name == "COMPLETE"
    assert result.best_trial.params["learning_rate"] in (0.02, 0.005)
    _, runs = mlflow_runs(stores["tracking_uri"])
    by_trial = {int(r.data.tags["automl.trial_number"]): r for r in runs if "automl.trial_number" in r.data.tags}
    for t in trials:
        run = by_trial[t.number]
        assert run.data.tags["automl.state"] == t.state.name
        if t.state.name == "PRUNED":  # the epoch it stopped at, as trained
            assert int(run.data.tags["automl.pruned_at_epoch"]) == t.user_attrs["epochs_run"]
            assert t.user_attrs["epochs_run"] < 5 or pruner == "patient"  # patient may stop at the last epoch
    parent = next(r for r in runs if r.data.tags.get("automl.role") == "search")
    assert parent.data.params["pruner"] == pruner


def test_patient_pruner_prunes_a_falling_trial_that_the_median_would_prune():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("patient"))
    for _ in range(3):
        good = study.ask()
        for step, value in enumerate([0.5, 0.7, 0.8, 0.9, 0.9]):
            good.report(value, step)
        study.tell(good, 0.9)
    falling, flat = study.ask(), study.ask()
    verdicts = {"falling": [], "flat": []}
    for step, (down, level) in enumerate(zip([0.4, 0.3, 0.2, 0.1, 0.1], [0.3] * 5)):
        falling.report(down, step)
        flat.report(level, step)
        verdicts["falling"].append(falling.should_prune())
        verdicts["flat"].append(flat.should_prune())
    assert verdicts == {"falling": [False, False, False, True, True], "flat": [False] * 5}


def test_no_pruner_lets_every_trial_finish(digits_small, stores, discrete_space):
    plan = GOODS[:3] + BADS[:1]
    result = Search(
        discrete_space,
        study_name="no-prune",
        pruner="none",
        max_trials=4,
        enqueue=plan,
        patience=None,
        verbose=False,
        **stores,
    ).fit(data=digits_small, epochs=3)
    assert [t.state.name for t in result.study.trials] == ["COMPLETE"] * 4
    assert [t.user_attrs["epochs_run"] for t in result.study.trials] == [3] * 4


def test_hyperband_pruner_follows_the_epoch_budget():
    assert make_pruner("hyperband", epochs=27)._max_resource == 27
    with pytest.raises(StrategyError, match="unknown pruner 'asha'"):
        make_pruner("asha")


def test_max_epochs_total_stops_the_search_inside_a_trial(digits_small, stores, tiny_space):
    result = Search(
        tiny_space,
        study_name="epochs",
        max_trials=10,
        max_epochs_total=5,
        pruner="none",
        patience=None,
        seed=0,
        verbose=False,
        **stores,
    ).fit(data=digits_small, epochs=3)
    trials = result.study.trials
    assert [t.user_attrs["epochs_run"] for t in trials] == [3, 2]  # the second trial stops at the budget
    assert all(t.state.name == "COMPLETE" for t in trials)
    _, runs = mlflow_runs(stores["tracking_uri"])
    last = next(r for r in runs if r.data.tags.get("automl.trial_number") == "1")
    assert last.data.tags["automl.stopped_by"] == "max_epochs_total"


def test_timeout_ends_the_trial_in_flight_cleanly(digits_small, stores, tiny_space):
    result = Search(
        tiny_space,
        study_name="deadline",
        max_trials=100,
        timeout=3,
        pruner="none",
        patience=None,
        verbose=False,
        **stores,
    ).fit(data=digits_small, epochs=500)
    trials = result.study.trials
    assert trials and all(t.state.name == "COMPLETE" for t in trials)  # none left RUNNING, none lost
    assert trials[-1].user_attrs["epochs_run"] < 500  # stopped at the deadline, after its epoch
    _, runs = mlflow_runs(stores["tracking_uri"])
    last = next(r for r in runs if r.data.tags.get("automl.trial_number") == str(trials[-1].number))
    assert last.data.tags["automl.stopped_by"] == "timeout" and last.info.status == "FINISHED"


def test_several_objectives_give_a_non_dominated_front_with_measured_tflite_cost(digits_small, stores, tiny_space):
    result = Search(
        tiny_space,
        study_name="multi",
        sampler="nsga2",
        max_trials=5,
        seed=2,
        verbose=False,
        objectives=["val_accuracy", "tflite_size_bytes", "latency_ms"],
        **stores,
    ).fit(data=digits_small, epochs=2)
    done = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 5
    directions = ["maximize", "minimize", "minimize"]
    for t in done:  # measured by converting and running each candidate
        measured = t.user_attrs["objectives"]
        assert t.values == [measured["val_accuracy"], measured["tflite_size_bytes"], measured["latency_ms"]]
        assert measured["tflite_size_bytes"] > 4 * t.user_attrs["param_count"]  # float32 weights + graph
        assert measured["latency_ms"] > 0
    front = result.pareto_front()
    members = [t for t in done if t.number in set(front["trial"])]
    assert members
    for t in members:
        assert not any(dominates(o.values, t.values, directions) for o in done)
    for t in done:
        if t not in members:
            assert any(dominates(m.values, t.values, directions) for m in members)
    with pytest.raises(ValueError, match="several objectives"):
        _ = result.best_trial
    smallest = result.select("tflite_size_bytes")
    assert smallest.values[1] == min(t.values[1] for t in members)
    model = result.best_model(select="val_accuracy")
    accuracy = float(np.mean(model.predict(digits_small.x_val, verbose=0).argmax(1) == digits_small.y_val))
    assert accuracy == pytest.approx(result.select("val_accuracy").values[0], abs=1e-6)
    client, runs = mlflow_runs(stores["tracking_uri"])
    parent = next(r for r in runs if r.data.tags.get("automl.role") == "search")
    assert parent.data.metrics["pareto_front_size"] == len(members)
    assert "pareto/pareto_front.csv" in [a.path for a in client.list_artifacts(parent.info.run_id, "pareto")]


def test_constraints_exclude_infeasible_trials(digits_small, stores, tiny_space):
    result = Search(
        tiny_space,
        study_name="constrained",
        max_trials=2,
        enqueue=[LARGE, SMALL],
        pruner="none",
        constraints=["param_count<=300"],
        verbose=False,
        **stores,
    ).fit(data=digits_small, epochs=2)
    large, small = result.study.trials
    assert large.user_attrs["param_count"] > 300 >= small.user_attrs["param_count"]
    assert large.user_attrs["constraints"] == [large.user_attrs["param_count"] - 300]
    assert result.best_trial.number == small.number  # whatever the large one scored
    board = result.leaderboard()
    assert list(board["trial"]) == [small.number, large.number] and list(board["feasible"]) == [True, False]
    frame = result.trials.set_index("trial")
    assert not frame.loc[large.number, "feasible"] and frame.loc[small.number, "feasible"]
    assert result.best_model().count_params() == small.user_attrs["param_count"]


def test_warm_start_enqueues_another_studys_best_and_continue_from_copies_its_trials(digits_small, stores, tiny_space):
    first = Search(tiny_space, study_name="first", max_trials=3, seed=4, pruner="none", verbose=False, **stores).fit(
        data=digits_small, epochs=1
    )
    ranked = leaderboard_trials(first.study)  # by value, equal values by the lower val_loss
    assert ranked[0].value == max(t.value for t in first.study.trials)
    warm = Search(
        tiny_space,
        study_name="warm",
        max_trials=2,
        seed=9,
        warm_start="first",
        warm_start_top_k=2,
        pruner="none",
        verbose=False,
        **stores,
    ).fit(data=digits_small, epochs=1)
    assert [t.params for t in warm.study.trials] == [t.params for t in ranked[:2]]
    assert warm.study.trials[0].user_attrs["warm_start_from"] == f"first#{ranked[0].number}"

    cont = Search(
        tiny_space,
        study_name="cont",
        max_trials=2,
        seed=9,
        continue_from="first",
        pruner="none",
        verbose=False,
        **stores,
    ).fit(data=digits_small, epochs=1)
    copied = [t for t in cont.study.trials if COPIED_ATTR in t.user_attrs]
    new = [t for t in cont.study.trials if COPIED_ATTR not in t.user_attrs]
    assert [t.params for t in copied] == [t.params for t in first.study.trials]
    assert len(new) == 2  # copied trials teach the sampler but do not use the budget
    with pytest.raises(Exception, match="no study 'nope'"):
        Search(tiny_space, study_name="x", warm_start="nope", verbose=False, **stores).fit(data=digits_small, epochs=1)


def test_space_start_configurations_are_tried_first_and_checked(digits_small, stores, tiny_space):
    from automl.space import SpaceError

    raw = {"architecture": tiny_space.raw["architecture"], "training": tiny_space.raw["training"], "start": [SMALL]}
    space = SearchSpace.from_dict(raw)
    result = Search(space, study_name="start", max_trials=2, seed=0, pruner="none", verbose=False, **stores).fit(
        data=digits_small, epochs=1
    )
    first = result.study.trials[0].params
    assert {k: first[k] for k in SMALL} == SMALL
    off = Search(
        space, study_name="no-start", max_trials=1, seed=0, pruner="none", verbose=False, start=False, **stores
    ).fit(data=digits_small, epochs=1)
    assert {k: off.study.trials[0].params.get(k) for k in SMALL} != SMALL
    for bad, where in (
        ({"learning_rate": 5.0}, "start[0].learning_rate"),
        ({"units": 3}, "start[0].units"),
        ({"optimizer": "rmsprop"}, "start[0].optimizer"),
    ):
        with pytest.raises(SpaceError, match=re.escape(where)):
            SearchSpace.from_dict({**raw, "start": [bad]}, source="space.yaml")


def test_cli_enqueue_file_and_objectives(tmp_path):
    from typer.testing import CliRunner

    from automl.cli import app

    enqueue = tmp_path / "known.yaml"
    enqueue.write_text("- {num_blocks: 1, learning_rate: 0.01, optimizer: adam, blocks.0.filters: 16}\n")
    store = tmp_path / "store"
    args = [
        "search",
        "image_cnn",
        "--data",
        "digits",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--seed",
        "0",
        "--study",
        "cli-multi",
        "--storage",
        str(store / "optuna.journal"),
        "--tracking-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--enqueue",
        str(enqueue),
        "--objective",
        "val_accuracy",
        "--objective",
        "param_count",
        "--quiet",
    ]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    study = optuna.load_study(
        study_name="cli-multi",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(store / "optuna.journal"))
        ),
    )
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.trials[0].params["learning_rate"] == 0.01 and study.trials[0].params["blocks.0.filters"] == 16
