"""Refit: the chosen configuration (or each ensemble member) trained again on the training and the
validation rows together, for the number of epochs its trial found best.

Why: after the search has used the validation split to choose, those rows are more training data;
on small data sets (hundreds of rows) a fifth more rows is worth more than the early-stopping
signal, which the trial's best epoch count replaces. What the model's layers learn from the rows
before training (text vocabularies and n-gram weights, random-convolution feature scales, boosted
trees) is learnt again from training + validation rows: words seen only in validation reviews
become features instead of out-of-vocabulary. A trial that started from pretrained weights keeps
the training split's preprocessing, which those weights were learnt with. Column statistics the
data set holds (tables' standardisation, category lists) stay the training split's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from . import records
from .blocks.registry import VALIDATION_IN_TRAINING
from .ensemble import ensemble_model
from .pretraining import rebuild_pretrained
from .records import SearchSettings, TrialSettings
from .training import fit_model, training_settings

SPLIT_CACHES = ("text_vocabulary",)  # Dataset.extra entries learnt from the training rows alone


def with_validation_rows(data):
    """The same Dataset with the validation rows appended to the training rows."""

    def join(a, b):
        if isinstance(a, dict):
            return {k: np.concatenate([a[k], b[k]]) for k in a}
        return np.concatenate([a, b])

    extra = {k: v for k, v in data.extra.items() if k not in SPLIT_CACHES}
    extra[VALIDATION_IN_TRAINING] = True  # nothing may early-stop on validation now
    return dataclasses.replace(
        data, x_train=join(data.x_train, data.x_val), y_train=join(data.y_train, data.y_val), extra=extra
    )


def best_epochs(trial) -> int:
    """Epochs to the trial's best epoch (what early stopping kept; 0 when no epoch beat the fitted
    scores its model starts from); all it ran for older trials."""
    if trial.user_attrs.get(records.BEST_EPOCHS) is not None:
        return int(trial.user_attrs[records.BEST_EPOCHS])
    return int(trial.user_attrs.get(records.EPOCHS_RUN) or 1)


def refit_trial(result, data, trial, callbacks: list | None = None, space=None) -> keras.Model:
    """Rebuild the trial's configuration (from `space`, default: the recorded one) and train it on
    training + validation rows."""
    from .export.trials import TrialModels

    settings = SearchSettings.of(result.study)
    config = TrialModels(result, data, space, verbose=False).config(trial)
    both = with_validation_rows(data)
    if settings.seed is not None:
        keras.utils.set_random_seed(settings.seed + trial.number)
    pretrained = trial.user_attrs.get(records.PRETRAIN_RUN) is not None
    model = rebuild_pretrained(config, data if pretrained else both, trial, result.tracking_uri)
    fit_model(
        model,
        both,
        training_settings(config.training),
        TrialSettings(
            objective=result.objective,
            direction=settings.direction or "minimize",
            epochs=best_epochs(trial),
            patience=None,
            seed=settings.seed,
        ),
        list(callbacks or []),
    )
    return model


def refit(result, data, members: list[int], weights: list[float], callbacks: list | None = None, space=None):
    """The members refit and combined with their weights (one member: that model). Returns the model
    and what it is (`{"refit": True, "members", "weights", "epochs", "train_samples"}`)."""
    trials = {t.number: t for t in result.study.get_trials(deepcopy=False)}
    models = [refit_trial(result, data, trials[n], callbacks, space) for n in members]
    info: dict[str, Any] = {
        "refit": True,
        "members": list(members),
        "weights": list(weights),
        "epochs": [best_epochs(trials[n]) for n in members],
        "train_samples": len(data.y_train) + len(data.y_val),
    }
    return ensemble_model(models, weights), info
