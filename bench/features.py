"""Fixed preprocessing computed once per search (automl/feature_cache.py) vs in every training step.

The same sampled configurations of a shipped space train both ways on a real data set from
../shared/data, the two ways alternating (raw, cached, raw, cached) so drift of the machine favours
neither; each round starts with an empty cache, so computing the cached features is on the clock.
Both ways train the same model: the final validation losses must agree.

    .venv/bin/python bench/features.py                                   # bank_marketing, tabular_mlp
    .venv/bin/python bench/features.py --task sms_spam --space text_cnn_rnn
"""

from __future__ import annotations

import argparse
import time

import keras
import optuna
from header import print_header
from overhead import sample_configs
from quality import load_task

from automl.builder import build_model
from automl.data import make_dataset
from automl.feature_cache import FeatureCache
from automl.objectives import default_objective
from automl.records import TrialSettings
from automl.space import load_space
from automl.training import fit_model, training_settings
from automl.trial import reclaim_memory


def train_all(space, data, configs, settings: TrialSettings, cached: bool) -> tuple[list[float], list[float]]:
    """Seconds and final validation loss per configuration, trained as a trial trains it."""
    features = FeatureCache(data) if cached else None
    times, losses = [], []
    for i, params in enumerate(configs):
        start = time.perf_counter()
        reclaim_memory()
        keras.utils.set_random_seed(settings.seed + i)
        config = space.sample(optuna.trial.FixedTrial(params))
        model = build_model(config.architecture, data)
        history = fit_model(model, data, training_settings(config.training), settings, [], features)
        times.append(time.perf_counter() - start)
        losses.append(history.history["val_loss"][-1])
    return times, losses


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="bank_marketing", help="a data set of bench/quality.py")
    ap.add_argument("--space", default="tabular_mlp")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print_header()

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    splits = load_task(args.task)
    data = make_dataset(*splits["train"], validation_data=splits["val"], name=args.task, seed=args.seed)
    space = load_space(args.space)
    objective, direction = default_objective(data.task)
    settings = TrialSettings(
        objective=objective, direction=direction, epochs=args.epochs, patience=None, seed=args.seed
    )
    configs = sample_configs(space, args.trials, args.seed)
    print(f"{args.trials} configurations of {args.space} on {data.summary()}, {args.epochs} epochs each")
    train_all(space, data, configs[:1], settings, cached=False)  # warm up TF kernels, off the clock

    rounds = {False: [], True: []}
    for cached in (False, True, False, True):
        rounds[cached].append(train_all(space, data, configs, settings, cached))
    k = args.trials
    raw, fast = (sum(sum(t) for t, _ in rounds[c]) / (k * len(rounds[c])) for c in (False, True))
    print(f"{'':34}{'s/trial':>10}")
    print(
        f"{'raw inputs in every step':34}{raw:>10.3f}   (runs: "
        f"{', '.join(f'{sum(t) / k:.3f}' for t, _ in rounds[False])})"
    )
    print(
        f"{'fixed preprocessing cached':34}{fast:>10.3f}   (runs: "
        f"{', '.join(f'{sum(t) / k:.3f}' for t, _ in rounds[True])})"
    )
    print(f"time ratio cached/raw: {fast / raw:.2f} ({1000 * (raw - fast):.0f} ms saved per trial)")
    diff = max(abs(a - b) for a, b in zip(rounds[False][0][1], rounds[True][0][1]))
    print(f"largest difference in final val_loss between the two ways, same seed: {diff:.2e}")


if __name__ == "__main__":
    main()
