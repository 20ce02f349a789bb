"""The budget-aware schedule (`schedule="budget"`, `--schedule budget`) of a search with a timeout.

Why: with a fixed wall-clock budget, full-length trials mean few configurations tried, and the
trial running at the deadline is cut off unfinished. So the budget is spent in two parts:

1. explore (at most the first `explore_share` of the time): every trial, the space's start
   configurations first, then the sampler's, trains at low fidelity (`low_epochs`, a third of the
   epochs, at most 3) under the study's pruner (successive halving by default). At most 3: with 30
   epochs (the task classes' default on small data), 10-epoch short trials gave successive halving
   more rungs to prune at, and on 80 ECG200 series it pruned the second start configuration, the
   best there, at epoch 4 (test accuracy 5 points lower, bench/RESULTS.md "Suite"). Exploring ends
   earlier when one more short trial would leave too little time to continue the best candidate
   so far (slow trials, a slow machine): a search always keeps room to finish its best. Under a
   trial cap (`max_trials` with the timeout) it also ends when the trials left are as many as the
   candidates to continue, so the cap's last trials continue the best;
2. exploit (the rest): the best low-fidelity candidates are continued from
   their saved weights for the remaining epochs, best first, each only if the time it is expected
   to take (from its epoch times) fits in the time left. When the best candidate not yet continued
   does not fit, it trains as many of its remaining epochs as the time left holds (a partial
   continuation, its fidelity between the two). When not one of its epochs fits, or all the
   candidates are continued, short configurations go on while a typical one fits (one that enters
   the best candidates is continued in turn): a search does not end with time it could use.

A short trial whose next epoch would eat into the time kept to continue the best candidate is
pruned after its current one, or mid-epoch once that time is reached (tag `automl.stopped_by` =
schedule): a slow configuration does not take the time the best candidate needs.

A short trial that kept its fitted start (boosted trees, a fitted linear model) through `patience`
epochs was ended by early stopping where a full-length run of it ends too, with the same model: it
stands for a full-fidelity trial (fidelity 1.0, attribute `settled_early`) and is not continued.

Every trial carries its fidelity (attribute `fidelity`: trained epochs / the search's epochs, and
MLflow tag `automl.fidelity`); rankings put full-fidelity trials before low-fidelity ones, so a
short trial is never ranked against a converged one (ranking.leaderboard_trials).
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from . import records
from .ranking import FINISHED, count, leaderboard_trials

SCHEDULES = ("full", "budget")
LOW_FRACTION = 1 / 3  # of the epochs, for explored configurations
LOW_EPOCHS_MAX = 3  # ... but no more: the rest of a longer search's epochs go to continuing the best
EXPLORE_SHARE = 0.7  # of the budget
CONTINUE_TOP = 3  # the most low-fidelity candidates continued (their models are kept)
CONTINUE_SETUP = 2.0  # seconds a continuation spends outside its epochs (load, save, log) until one is measured


class BudgetSchedule:
    """Decides, before each trial, what it trains (`before_trial`) and what comes next (`next`)."""

    def __init__(
        self,
        timeout: float,
        epochs: int,
        explore_share: float = EXPLORE_SHARE,
        top: int = CONTINUE_TOP,
        max_trials: int | None = None,
    ):
        self.timeout, self.epochs, self.top = timeout, epochs, top
        self.max_trials = max_trials  # a cap on finished trials as well: the last ones continue the best
        self.low_epochs = max(1, min(LOW_EPOCHS_MAX, round(epochs * LOW_FRACTION)))
        self.explore_share = explore_share
        self.started = time.time()
        self.reason: str | None = None  # why exploitation stopped early
        self._exploiting = False  # once exploring ends it stays ended

    @property
    def active(self) -> bool:
        """A search of 1-2 epochs has no lower fidelity: then every trial trains fully."""
        return self.low_epochs < self.epochs

    def exploring(self, study: optuna.Study) -> bool:
        """Before each trial: still time for another low-fidelity configuration?"""
        if not self._exploiting:
            elapsed = time.time() - self.started
            best = self._candidates(study)[:1]
            # another short trial (a typical one) and then the best's continuation
            reserve = _typical_short_trial(study) + self._needed(best[0], study) if best else 0.0
            self._exploiting = (
                elapsed >= self.explore_share * self.timeout
                or elapsed + reserve > self.timeout
                or self._trials_left_only_for_continuing(study)
            )
        return not self._exploiting

    def _trials_left_only_for_continuing(self, study: optuna.Study) -> bool:
        """Under a trial cap, the trials left are as many as the candidates to continue: they go to
        continuing, not to more short trials (a 10-trial search with a timeout ran 10 short trials
        and returned a 3-epoch model)."""
        if self.max_trials is None:
            return False
        return count(study, FINISHED) + len(self._candidates(study)) >= self.max_trials

    def _candidates(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """The best low-fidelity trials with a saved model, best first (at most `top`)."""
        low = [
            t
            for t in leaderboard_trials(study)
            if t.user_attrs.get(records.FIDELITY, 1.0) < 1.0
            and t.user_attrs.get(records.MODEL_ARTIFACT)
            and records.CONTINUED_FROM not in t.user_attrs  # a partial continuation is not continued again
        ]
        return low[: self.top]

    def _needed(self, t: optuna.trial.FrozenTrial, study: optuna.Study, epochs: int | None = None) -> float:
        """Expected seconds to continue `t` for `epochs` (default: all the remaining) epochs: from its
        epoch times when recorded (the first epoch again, as the loaded model is traced again, then
        its later epochs' mean, plus the time a continuation spends outside its epochs), else its
        whole low-fidelity time scaled. Its whole time also counts what a continuation does not
        repeat (building the model, fitting trees, a fresh worker's set-up): a slow first trial then
        made every continuation look too long (bench/RESULTS.md "Suite")."""
        count = self.epochs - self.low_epochs if epochs is None else epochs
        times = t.user_attrs.get(records.EPOCH_SECONDS) or []
        if not times:
            return _seconds(t) * count / self.low_epochs
        later = times[1:] or times
        return times[0] + sum(later) / len(later) * (count - 1) + _continuation_overhead(study)

    def _epochs_that_fit(self, t: optuna.trial.FrozenTrial, study: optuna.Study, left: float) -> int:
        """The most of `t`'s remaining epochs a continuation is expected to train in `left` seconds."""
        fitting = [k for k in range(1, self.epochs - self.low_epochs + 1) if self._needed(t, study, k) <= left]
        return max(fitting, default=0)

    def before_trial(self, trial: optuna.Trial) -> None:
        """Record the trial's epochs and fidelity (a continuation: the remaining epochs, full fidelity, or
        those the time left holds)."""
        attrs = trial.user_attrs
        if records.CONTINUED_FROM in attrs:
            source = trial.study.get_trials(deepcopy=False)[int(attrs[records.CONTINUED_FROM])]
            epochs = int(attrs.get(records.CONTINUE_EPOCHS, self.epochs - self.low_epochs))
            trial.set_user_attr(records.TRIAL_EPOCHS, epochs)
            # its saved weights are those of its best epoch, not its last
            trial.set_user_attr(records.EPOCH_OFFSET, int(source.user_attrs.get(records.BEST_EPOCHS, self.low_epochs)))
            trial.set_user_attr(records.FIDELITY, min(1.0, (self.low_epochs + epochs) / self.epochs))
        elif records.TRIAL_EPOCHS not in attrs:
            trial.set_user_attr(records.TRIAL_EPOCHS, self.low_epochs)
            trial.set_user_attr(records.FIDELITY, self.low_epochs / self.epochs)
            reserve = self._reserve(trial.study)
            deadline = None if reserve is None else self.started + self.timeout - reserve
            if deadline is not None and deadline > time.time():  # a reserve that no longer fits protects nothing
                trial.set_user_attr(records.EXPLORE_DEADLINE, deadline)

    def _reserve(self, study: optuna.Study) -> float | None:
        """Seconds to keep for continuing the best candidate not yet continued (None: no such one).
        A short trial whose next epoch would end inside them is pruned after its epoch: one slow
        configuration (a recurrent net on 1460-step series) ran past the 60 s budget and the
        best candidate was never continued (bench/RESULTS.md "Suite")."""
        done = _continued(study)
        waiting = [t for t in self._candidates(study) if t.number not in done]
        return self._needed(waiting[0], study) if waiting else None

    def next(self, study: optuna.Study) -> bool:
        """Before each trial: True to go on (while exploring, a new configuration; then, a
        continuation enqueued here); False when no candidate can be continued in the time left."""
        if self.exploring(study):
            return True
        if any(
            records.CONTINUED_FROM in t.user_attrs
            for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        ):
            return True  # one is already enqueued
        done = _continued(study)
        low = self._candidates(study)
        left = self.timeout - (time.time() - self.started)
        for t in low:
            if t.number in done:
                continue
            needed = self._needed(t, study)
            if needed > left:
                self.reason = f"continuing trial {t.number} would take ~{needed:.0f} s, {left:.0f} s are left"
                return self._continue_partly(t, study, left) or self._short_trial_fits(study, left)
            study.enqueue_trial(t.params, user_attrs={records.CONTINUED_FROM: t.number})
            return True
        # all continued, time left (a 240 s search stopped at 191 s): explore on; a new configuration
        # that enters the top candidates is continued in turn
        self.reason = (
            f"the top {len(low)} low-fidelity candidates are continued"
            if len(low) > 1
            else "the best low-fidelity candidate is continued"
        )
        return self._short_trial_fits(study, left)

    def _continue_partly(self, t: optuna.trial.FrozenTrial, study: optuna.Study, left: float) -> bool:
        """Its whole continuation does not fit: continue `t` for the epochs that do. A 60 s search on
        4000 images ended at 43 s with its best model near chance (validation loss 2.07 after 3
        epochs; 7 more would take ~48 s, a new trial ~20 s; bench/RESULTS.md "Suite"). This comes
        before a new short trial: when short trials came first, each was pruned at its first batch
        to keep this continuation's reserve, and a 60 s mnist_test search ran 17 of them in its
        last 30 s without ever continuing its best (bench/RESULTS.md "Suite")."""
        epochs = self._epochs_that_fit(t, study, left)
        if epochs < 1:
            return False
        study.enqueue_trial(t.params, user_attrs={records.CONTINUED_FROM: t.number, records.CONTINUE_EPOCHS: epochs})
        self.reason = None
        return True

    def _short_trial_fits(self, study: optuna.Study, left: float) -> bool:
        """No continuation fits or is left: rather than end with time left, try one more low-fidelity
        configuration when a typical one (with half again as margin) would fit; a faster one may
        become a candidate whose continuation fits."""
        typical = _typical_short_trial(study)
        if typical and 1.5 * typical < left:
            self.reason = None
            return True
        return False


def _continued(study: optuna.Study) -> set:
    """The numbers of the trials a continuation was started for (enqueued, running or done)."""
    return {t.user_attrs.get(records.CONTINUED_FROM) for t in study.get_trials(deepcopy=False)}


def _continuation_overhead(study: optuna.Study) -> float:
    """Seconds a continuation spent outside its epochs (loading, saving, logging), the most of
    those finished so far; CONTINUE_SETUP until one has finished."""
    spent = [
        _seconds(t) - sum(t.user_attrs[records.EPOCH_SECONDS])
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if records.CONTINUED_FROM in t.user_attrs and t.user_attrs.get(records.EPOCH_SECONDS)
    ]
    return max(spent, default=CONTINUE_SETUP)


def _typical_short_trial(study: optuna.Study) -> float:
    """The median wall seconds of the finished low-fidelity configurations, settled ones included
    (they trained as short trials; fidelity 1.0 only says what they stand for), 0 when none."""
    low = sorted(
        _seconds(t)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if (t.user_attrs.get(records.FIDELITY, 1.0) < 1.0 or t.user_attrs.get(records.SETTLED_EARLY))
        and records.CONTINUED_FROM not in t.user_attrs
    )
    return low[len(low) // 2] if low else 0.0


def _seconds(t: optuna.trial.FrozenTrial) -> float:
    if t.datetime_complete and t.datetime_start:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return 0.0
