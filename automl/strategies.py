"""Samplers and pruners, chosen by name."""
from __future__ import annotations

import warnings

import optuna

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


def make_sampler(name: str, seed: int | None = None, max_trials: int = 20) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # group=True decomposes conditional spaces; constant_liar keeps parallel workers apart
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                              n_startup_trials=max(3, min(10, max_trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r} (choose from {', '.join(PRUNERS)})")
