"""What a study tries first: given configurations and the space's `start` list, another study's
top-k, and (for a new study) another study's finished trials, so the sampler starts from what
that one learnt."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from . import records
from .errors import SearchError
from .ranking import leaderboard_trials


def seed_study(
    study: optuna.Study,
    storage,
    space,
    created: bool,
    first: list[dict[str, Any]],
    warm_start: str | None,
    warm_start_top_k: int,
    continue_from: str | None,
) -> int:
    """Enqueue `first`, then `warm_start`'s top-k; copy `continue_from`'s complete trials into a new
    study. Returns how many trials were copied."""
    for params in first:
        study.enqueue_trial(params, skip_if_exists=True)
    for name, what in ((warm_start, "warm_start"), (continue_from, "continue_from")):
        if name and name == study.study_name:
            raise SearchError(f"{what} names this study itself ({name!r})")
    if warm_start:
        other = _other_study(warm_start, storage, "warm_start")
        for t in leaderboard_trials(other)[:warm_start_top_k]:
            study.enqueue_trial(
                t.params,
                user_attrs={records.WARM_START_FROM: f"{other.study_name}#{t.number}"},
                skip_if_exists=True,
            )
    if not (continue_from and created):
        return 0
    other = _other_study(continue_from, storage, "continue_from")
    if other.user_attrs.get(records.SPACE_FINGERPRINT) != space.fingerprint():
        raise SearchError(
            f"continue_from: study {other.study_name!r} was run with another space; "
            "its trials cannot teach this one (use warm_start to enqueue its best instead)"
        )
    if [d.name for d in other.directions] != [d.name for d in study.directions]:
        raise SearchError(f"continue_from: study {other.study_name!r} has other objectives")
    copied = [
        optuna.trial.create_trial(
            params=t.params,
            distributions=t.distributions,
            values=t.values,
            user_attrs={**t.user_attrs, records.COPIED_FROM: f"{other.study_name}#{t.number}"},
            intermediate_values=t.intermediate_values,
        )
        for t in other.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]
    study.add_trials(copied)
    return len(copied)


def _other_study(name: str, storage, what: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise SearchError(f"{what}: no study {name!r} in the storage") from None
