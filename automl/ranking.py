"""How trials rank: feasibility, the best-first order, the Pareto front. No TensorFlow, no MLflow:
the trial runners, the progress display, plots, export and results all order trials this way."""

from __future__ import annotations

import math

import optuna

from . import records

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def feasible(t: optuna.trial.FrozenTrial) -> bool:
    """Meets every constraint of the search (always, without constraints)."""
    return all(c <= 0 for c in t.user_attrs.get(records.CONSTRAINTS, []))


def objective_names(study: optuna.Study) -> list[str]:
    names = study.user_attrs.get(records.OBJECTIVE_NAMES) or [study.user_attrs.get(records.OBJECTIVE, "value")]
    return list(names) if len(names) == len(study.directions) else [f"value_{i}" for i in range(len(study.directions))]


def rank_key(value: float, tiebreak_loss: float | None, maximize: bool) -> tuple:
    """Sort key, best first: the objective, then (for equal values) the lower validation loss.

    Why: accuracy on a small validation set moves in steps of one sample, so several trials often
    share the best value; the one whose probabilities fit the validation data better is the safer
    pick (the rule BestEpochStopping applies to a trial's epochs).
    """
    loss = tiebreak_loss if tiebreak_loss is not None and math.isfinite(tiebreak_loss) else math.inf
    return (-value if maximize else value, loss)


def leaderboard_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Feasible complete trials, best first (by the first objective when there are several)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if feasible(t)]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return sorted(done, key=lambda t: (*trial_key(t.values[0], t.user_attrs, maximize), t.number))


def trial_key(value: float, attrs: dict, maximize: bool) -> tuple:
    """Sort key of a trial, best first: full-fidelity trials before low-fidelity ones (a budget
    schedule's short trials are never ranked against converged ones), then `rank_key`."""
    return (-float(attrs.get(records.FIDELITY, 1.0)), *rank_key(value, attrs.get(records.TIEBREAK), maximize))


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    """a is at least as good as b everywhere and better somewhere."""
    sign = [1 if d == "maximize" else -1 for d in directions]
    ge = all(s * x >= s * y for s, x, y in zip(sign, a, b))
    return ge and any(s * x > s * y for s, x, y in zip(sign, a, b))


def pareto_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The non-dominated feasible complete trials."""
    directions = [d.name.lower() for d in study.directions]
    done = leaderboard_trials(study)
    return [t for t in done if not any(dominates(o.values, t.values, directions) for o in done if o is not t)]


def count(study: optuna.Study, states) -> int:
    """Trials of this study in `states`, not counting trials copied in from another study."""
    return sum(records.COPIED_FROM not in t.user_attrs for t in study.get_trials(deepcopy=False, states=states))


def weight_pareto(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Feasible complete trials no other beats on both the objective and the weight count, smallest
    first; a multi-objective study's own front (`study.best_trials`). Empty when none has a weight count."""
    if len(study.directions) > 1:
        front = study.best_trials
    else:
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get(records.PARAM_COUNT) is not None and feasible(t)
        ]
        sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1

        def beats(a, b):
            va, vb = sign * a.value, sign * b.value
            sa, sb = a.user_attrs[records.PARAM_COUNT], b.user_attrs[records.PARAM_COUNT]
            return va >= vb and sa <= sb and (va > vb or sa < sb)

        front = [t for t in done if not any(beats(o, t) for o in done)]
    return sorted(front, key=lambda t: (t.user_attrs.get(records.PARAM_COUNT) or 0, t.number))
