"""Orchestration overhead: the same K configurations as (a) a bare Keras loop and (b) automl.Search.

Both sides build the same model from the same sampled configuration with the same seed, compile and
fit it the same way (no early stopping, no pruning, so both train every epoch) and evaluate it.
(b) adds what the product adds: Optuna study + journal storage, MLflow parent/child runs with
params and per-epoch metrics, best-model saving, progress. The bare loop runs before and after (b)
and is averaged, so drift of the machine does not favour either side.

    .venv/bin/python bench/overhead.py                 # ~10 s trials on digits (K=6)
    .venv/bin/python bench/overhead.py --epochs 2 --trials 10   # short trials: absolute overhead
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna

import automl  # noqa: F401  (sets quiet TF logging)
from automl.builder import build_model
from automl.data import load_data
from automl.objectives import default_objective
from automl.records import TrialSettings
from automl.search import Search
from automl.space import load_space
from automl.training import fit_model, training_settings


def sample_configs(space, k: int, seed: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(k):
        trial = study.ask()
        space.sample(trial)
        configs.append(dict(trial.params))
        study.tell(trial, 0.0)
    return configs


def bare_loop(space, data, configs, settings: TrialSettings) -> list[float]:
    import keras

    times = []
    for i, params in enumerate(configs):
        start = time.perf_counter()
        keras.backend.clear_session(free_memory=True)
        keras.utils.set_random_seed(settings.seed + i)
        config = space.sample(optuna.trial.FixedTrial(params))
        model = build_model(config.architecture, data)
        fit_model(model, data, training_settings(config.training), settings, [])
        model.evaluate(data.x_val, data.y_val, verbose=0)
        times.append(time.perf_counter() - start)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--space", default="image_cnn")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(args.space)
    data = load_data(args.data, seed=args.seed)
    objective, direction = default_objective(data.task)
    settings = TrialSettings(
        objective=objective, direction=direction, epochs=args.epochs, patience=None, seed=args.seed
    )
    configs = sample_configs(space, args.trials, args.seed)
    print(f"{args.trials} configurations of {args.space} on {data.summary()}, {args.epochs} epochs each")

    bare_loop(space, data, configs[:1], settings)  # warm up TF kernels once, off the clock
    bare_before = bare_loop(space, data, configs, settings)

    with tempfile.TemporaryDirectory() as tmp:
        search = Search(
            space,
            study_name="overhead",
            start=False,
            storage=str(Path(tmp) / "optuna.journal"),
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            sampler="random",
            pruner="none",
            seed=args.seed,
            max_trials=args.trials,
            patience=None,
            enqueue=configs,
            verbose=False,
        )
        start_wall, start = time.time(), time.perf_counter()
        result = search.fit(data=data, epochs=args.epochs)
        search_total = time.perf_counter() - start
        trials = result.study.trials
        first_start = min(t.datetime_start for t in trials).timestamp()
        last_end = max(t.datetime_complete for t in trials).timestamp()
        setup, teardown = first_start - start_wall, start_wall + search_total - last_end
        per_trial = (last_end - first_start) / len(trials)  # includes sampling and callbacks between trials
        assert [t.params for t in result.study.trials] == configs, "search ran other configurations"
        states = {t.state.name for t in result.study.trials}
    bare_after = bare_loop(space, data, configs, settings)

    bare = [(a + b) / 2 for a, b in zip(bare_before, bare_after)]
    k = args.trials
    bare_mean = sum(bare) / k
    print(f"{'':34}{'s/trial':>10}")
    print(
        f"{'bare Keras loop (mean of 2 runs)':34}{bare_mean:>10.3f}   "
        f"(runs: {sum(bare_before) / k:.3f}, {sum(bare_after) / k:.3f})"
    )
    print(f"{'automl.Search, trial to trial':34}{per_trial:>10.3f}   (states: {', '.join(sorted(states))})")
    print(
        f"per-trial overhead: {1000 * (per_trial - bare_mean):.0f} ms = {100 * (per_trial / bare_mean - 1):.1f}% "
        f"of trial time (ratio {per_trial / bare_mean:.3f}); goal <= 150 ms and <= 3% for ~10 s trials"
    )
    print(
        f"once per search: setup {setup:.2f} s (study, MLflow store and parent run), teardown {teardown:.2f} s "
        f"(leaderboard, best model onto the parent run); whole fit() {search_total / k:.3f} s/trial "
        f"= ratio {search_total / k / bare_mean:.3f} for {k} trials"
    )


if __name__ == "__main__":
    main()
