"""The budget-aware schedule (automl.schedule): low-fidelity exploration, then the best candidates
continued from their saved weights, all within the timeout; fidelity-aware ranking."""

from __future__ import annotations

import datetime
import time

import optuna
import pytest
from conftest import mlflow_runs


def finished_trial(number: int, value: float = 0.5, attrs: dict | None = None, seconds: float = 3.0, state=None):
    """A trial as the schedule reads it: `seconds` of wall time ending now, its user attributes."""
    end = datetime.datetime.now()
    return optuna.trial.FrozenTrial(
        number=number, trial_id=number, state=state or optuna.trial.TrialState.COMPLETE, value=value, values=None,
        datetime_start=end - datetime.timedelta(seconds=seconds), datetime_complete=end,
        params={"x": value}, distributions={"x": optuna.distributions.FloatDistribution(0, 10)},
        user_attrs=attrs or {}, system_attrs={}, intermediate_values={},
    )  # fmt: skip


def test_low_fidelity_trials_never_outrank_full_ones():
    from automl import records
    from automl.ranking import leaderboard_trials

    study = optuna.create_study(direction="minimize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for value, fidelity in ((0.1, 1 / 3), (0.5, 1.0), (0.3, 1.0), (0.05, 1 / 3)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": value}, distributions=dist, value=value, user_attrs={records.FIDELITY: fidelity}
            )
        )
    ranked = [t.value for t in leaderboard_trials(study)]
    assert ranked == [0.3, 0.5, 0.05, 0.1]  # full first, each group best first


def test_exploring_ends_early_when_the_best_candidate_could_no_longer_be_continued():
    from automl import records
    from automl.schedule import BudgetSchedule

    def study_with_a_candidate(seconds: float) -> optuna.Study:
        study = optuna.create_study(direction="minimize")
        low = {records.FIDELITY: 1 / 3, records.MODEL_ARTIFACT: "model/model.keras"}
        study.add_trial(finished_trial(0, attrs=low, seconds=seconds))
        return study

    fast, slow = BudgetSchedule(timeout=100, epochs=6), BudgetSchedule(timeout=100, epochs=6)
    fast.started = slow.started = time.time() - 20  # 20 s of 100 spent: well inside the 70 % share
    assert fast.exploring(study_with_a_candidate(5.0))  # 5 s more + 10 s to continue: fits
    assert not slow.exploring(study_with_a_candidate(30.0))  # 30 s more + 60 s to continue: 110 > 80 left
    assert not slow.exploring(study_with_a_candidate(1.0))  # once exploiting, it stays so
    late = BudgetSchedule(timeout=100, epochs=6)
    late.started = time.time() - 71
    assert not late.exploring(study_with_a_candidate(1.0))  # past the explore share


def test_short_trials_train_at_most_three_epochs_and_the_continuation_trains_the_rest():
    """With 30 epochs (the task classes' default on small data) 10-epoch short trials gave successive
    halving more rungs to prune at: on 80 ECG200 series it pruned the best start configuration at
    epoch 4 (bench/RESULTS.md "Suite"). Short trials keep 3 epochs; the continuation trains 27."""
    from automl import records
    from automl.schedule import BudgetSchedule

    assert [BudgetSchedule(60, e).low_epochs for e in (1, 2, 6, 10, 11, 30)] == [1, 1, 2, 3, 3, 3]
    schedule = BudgetSchedule(timeout=600, epochs=30)
    study = optuna.create_study(direction="minimize")
    short = study.ask()
    schedule.before_trial(short)
    assert short.user_attrs[records.TRIAL_EPOCHS] == 3
    assert short.user_attrs[records.FIDELITY] == pytest.approx(0.1)
    short.set_user_attr(records.MODEL_ARTIFACT, "m")
    short.set_user_attr(records.EPOCH_SECONDS, [2.0, 1.0, 1.0])
    study.tell(short, 0.5)
    schedule.started = time.time() - 500  # past the explore share: continue the candidate
    assert schedule.next(study)
    continuation = study.ask()
    schedule.before_trial(continuation)
    assert continuation.user_attrs[records.CONTINUED_FROM] == 0
    assert continuation.user_attrs[records.TRIAL_EPOCHS] == 27
    assert continuation.user_attrs[records.FIDELITY] == 1.0


def test_a_continuation_is_estimated_from_the_candidates_epoch_times_not_its_set_up():
    """The no-start searches' first trial took 15-25 s, mostly set-up (a fresh worker, a trees fit),
    with quick epochs after the first: its continuation must not look like 7/3 of the whole trial."""
    from automl import records
    from automl.schedule import CONTINUE_SETUP, BudgetSchedule

    low = {records.FIDELITY: 1 / 3, records.MODEL_ARTIFACT: "m", records.EPOCH_SECONDS: [6.0, 1.0, 2.0]}
    timed = finished_trial(0, attrs=low, seconds=22)
    schedule = BudgetSchedule(timeout=60, epochs=10)  # 3 low epochs, 7 to continue
    study = optuna.create_study(direction="minimize")
    study.add_trial(timed)
    # the first epoch again (the loaded model is traced again), then 1.5 s for each of the 6 others
    assert schedule._needed(timed, study) == pytest.approx(6.0 + 1.5 * 6 + CONTINUE_SETUP)  # 17 s
    schedule.started = time.time() - 25  # 35 s left: the 17 s continuation fits (7/3 x 22 s = 51 s would not)
    assert not schedule.exploring(study)  # 22 s (a typical short trial) + 17 s > 35 s: exploit now
    assert schedule.next(study)
    assert [t.user_attrs.get(records.CONTINUED_FROM) for t in study.get_trials()] == [None, 0]  # enqueued
    measured = optuna.create_study(direction="minimize")
    measured.add_trial(timed)
    # a finished continuation: 22 s in all, 5 s of epochs, so 17 s outside them
    attrs = {records.CONTINUED_FROM: 0, records.FIDELITY: 1.0, records.EPOCH_SECONDS: [3.0, 1.0, 1.0]}
    continuation = finished_trial(1, attrs=attrs, seconds=22)
    measured.add_trial(continuation)
    assert schedule._needed(timed, measured) == pytest.approx(6.0 + 1.5 * 6 + 17.0)  # the measured overhead


def test_when_no_continuation_fits_a_short_trial_still_uses_the_time_left():
    """A slow first trial made every continuation look too long, and the search ended with half its
    budget unused (bench/RESULTS.md "Suite", automl-no-start): now it explores while a short trial fits."""
    from automl import records
    from automl.schedule import BudgetSchedule

    def low_trial(number: int, seconds: float, state, saved: bool) -> optuna.trial.FrozenTrial:
        attrs = {records.FIDELITY: 1 / 3, **({records.MODEL_ARTIFACT: "model/model.keras"} if saved else {})}
        return finished_trial(number, value=0.5 + number, attrs=attrs, seconds=seconds, state=state)

    study = optuna.create_study(direction="minimize")
    study.add_trial(low_trial(0, 30.0, optuna.trial.TrialState.COMPLETE, saved=True))  # continuing: ~60 s
    schedule = BudgetSchedule(timeout=100, epochs=6)
    schedule.started = time.time() - 88  # 12 s left: no continuation fits (not one 15 s epoch), nor a 30 s trial
    assert not schedule.next(study)
    assert "would take" in schedule.reason
    study.add_trial(low_trial(1, 3.0, optuna.trial.TrialState.PRUNED, saved=False))
    assert not schedule.next(study)  # the median trial (30 s) would not fit
    study.add_trial(low_trial(2, 3.0, optuna.trial.TrialState.PRUNED, saved=False))  # typical: 3 s, fits
    assert schedule.next(study)
    assert not any(records.CONTINUED_FROM in t.user_attrs for t in study.get_trials())  # a new configuration
    short = study.ask()
    schedule.before_trial(short)
    # the candidate's reserve (60 s) no longer fits in the 12 s left: an explore deadline kept for it
    # would prune the short trial at its first batch
    assert records.EXPLORE_DEADLINE not in short.user_attrs
    schedule.started = time.time() - 98  # 2 s left: nothing fits
    assert not schedule.next(study)


def test_when_the_best_candidates_whole_continuation_does_not_fit_it_continues_before_a_new_short_trial():
    """A 60 s mnist_test search had two 16 s start trials and 28 s left; continuing the best needed
    ~35 s. A typical short trial (16 s) fitted, so it started new ones, and each was pruned at its
    first batch to keep that reserve: 17 of them in 30 s, the best never trained past its 3 epochs
    (bench/RESULTS.md "Suite"). The epochs of the best that fit now come first."""
    from automl import records
    from automl.schedule import CONTINUE_SETUP, BudgetSchedule

    low = {records.FIDELITY: 0.3, records.MODEL_ARTIFACT: "m", records.EPOCH_SECONDS: [6.0, 4.0, 4.0]}
    study = optuna.create_study(direction="minimize")
    study.add_trial(finished_trial(0, value=0.107, attrs=low, seconds=16))
    study.add_trial(finished_trial(1, value=0.075, attrs=low, seconds=16))
    schedule = BudgetSchedule(timeout=60, epochs=10)  # 7 epochs to continue: 6 + 6 x 4 + 2 = 32 s
    schedule.started = time.time() - 30  # 30 s left; a typical short trial (16 s, 24 with margin) fits
    assert schedule._short_trial_fits(study, 30.0)
    assert schedule.next(study)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    k = 1 + int((30 - 6 - CONTINUE_SETUP) // 4)  # 6 + 4 (k - 1) + 2 <= 30: 6 epochs (28 s)
    assert [(t.user_attrs[records.CONTINUED_FROM], t.user_attrs[records.CONTINUE_EPOCHS]) for t in waiting] == [(1, k)]


def test_when_nothing_else_fits_the_best_candidate_trains_the_epochs_the_time_left_holds():
    """A 60 s search on 4000 images ended at 43 s with its best model near chance (bench/RESULTS.md
    "Suite"): its whole continuation (~48 s) and a new trial (~20 s) did not fit, a few epochs did."""
    from automl import records
    from automl.schedule import CONTINUE_SETUP, BudgetSchedule

    def frozen(number: int, value: float, attrs: dict) -> optuna.trial.FrozenTrial:
        return finished_trial(number, value=value, attrs=attrs, seconds=20)

    low = {records.FIDELITY: 0.3, records.MODEL_ARTIFACT: "m", records.EPOCH_SECONDS: [8.0, 6.0, 6.0]}
    study = optuna.create_study(direction="minimize")
    study.add_trial(frozen(0, 2.07, low))
    study.add_trial(frozen(1, 2.30, low))
    schedule = BudgetSchedule(timeout=60, epochs=10)  # 3 low epochs, 7 to continue: 8 + 6 x 6 + 2 = 46 s
    schedule.started = time.time() - 35  # 25 s left: a 20 s trial needs 30 with its margin
    assert schedule.next(study)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    # the best candidate, for the k epochs with 8 + 6 (k - 1) + CONTINUE_SETUP <= 25 (3 with a 2 s set-up)
    k = 1 + int((25 - 8 - CONTINUE_SETUP) // 6)
    assert 1 <= k < 7
    assert [(t.user_attrs[records.CONTINUED_FROM], t.user_attrs[records.CONTINUE_EPOCHS]) for t in waiting] == [(0, k)]
    trial = study.ask()  # the enqueued continuation: k epochs, from 3 to 3 + k of 10
    schedule.before_trial(trial)
    assert trial.user_attrs[records.TRIAL_EPOCHS] == k
    assert trial.user_attrs[records.FIDELITY] == pytest.approx((3 + k) / 10)
    trial.set_user_attr(records.MODEL_ARTIFACT, "m")  # its model is saved, as a trial's is
    study.tell(trial, 1.5)
    # the partial continuation (trial 2) is not itself a candidate to continue
    assert [t.number for t in schedule._candidates(study)] == [0, 1]
    schedule.started = time.time() - 55  # 5 s left: not one epoch of trial 1 (8 + 2 s) fits
    assert not schedule.next(study)


def test_with_every_top_candidate_continued_and_time_left_it_explores_and_continues_a_new_best():
    """A 240 s search ended at 191 s once its three candidates were continued (bench/RESULTS.md
    "Suite, 240 s"): the time left now goes to new short configurations, and one that enters the
    top candidates is continued in turn."""
    from automl import records
    from automl.schedule import BudgetSchedule

    def frozen(number: int, value: float, attrs: dict) -> optuna.trial.FrozenTrial:
        return finished_trial(number, value=value, attrs=attrs)

    low = {records.FIDELITY: 1 / 3, records.MODEL_ARTIFACT: "model/model.keras"}
    study = optuna.create_study(direction="minimize")
    study.add_trial(frozen(0, 0.5, low))
    study.add_trial(frozen(1, 0.4, {records.CONTINUED_FROM: 0, records.FIDELITY: 1.0}))
    schedule = BudgetSchedule(timeout=100, epochs=6, top=1)
    schedule.started = time.time() - 80  # exploiting; 20 s left; trial 0 (the only candidate) is continued
    assert schedule.next(study)  # a typical short trial (3 s) fits: go on
    assert all(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials())  # a new configuration
    study.add_trial(frozen(2, 0.3, low))  # it beats trial 0 at low fidelity: the new top candidate
    assert schedule.next(study)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs.get(records.CONTINUED_FROM) for t in waiting] == [2]
    done = optuna.create_study(direction="minimize")  # the same, trial 2's continuation finished
    for t in (*study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), frozen(3, 0.2, waiting[0].user_attrs)):
        done.add_trial(t)
    assert schedule.next(done)  # still 20 s left: another short configuration
    schedule.started = time.time() - 99  # 1 s left: neither a continuation nor a short trial fits
    assert not schedule.next(done)


def test_settled_short_trials_still_count_as_short_trials_for_the_time_left():
    """A short trial settled on its fitted start (fidelity 1.0, `settled_early`) is no candidate to
    continue, but it trained as a short trial: when every short trial so far settled, the time left
    still goes to another short configuration instead of ending the search at the explore share."""
    from automl import records
    from automl.schedule import BudgetSchedule

    settled = {records.FIDELITY: 1.0, records.SETTLED_EARLY: True, records.MODEL_ARTIFACT: "m"}
    study = optuna.create_study(direction="minimize")
    for number in range(2):
        study.add_trial(finished_trial(number, value=0.4, attrs=settled, seconds=3.0))
    schedule = BudgetSchedule(timeout=100, epochs=9)
    schedule.started = time.time() - 75  # exploiting; 25 s left, no candidate to continue
    assert schedule._candidates(study) == []
    assert schedule.next(study)  # a typical short trial (3 s) fits
    schedule.started = time.time() - 97  # 3 s left: 1.5 x 3 s does not fit
    assert not schedule.next(study)


def test_budget_schedule_explores_short_then_continues_the_best_within_the_budget(stores, tiny_space, digits_small):
    import keras

    from automl import Search, records, tracking

    timeout = 30.0  # exploring ends early enough to continue the best even on a slow machine
    search = Search(
        tiny_space,
        study_name="budget",
        max_trials=200,
        timeout=timeout,
        seed=0,
        verbose=False,
        isolate=False,
        schedule="budget",
        **stores,
    )
    started = time.time()
    result = search.fit(data=digits_small, epochs=6)
    trials = [t for t in result.study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    low = [t for t in trials if t.user_attrs.get(records.FIDELITY) == pytest.approx(1 / 3)]
    continued = [t for t in trials if records.CONTINUED_FROM in t.user_attrs]
    assert len(low) >= 2 and all(t.user_attrs[records.TRIAL_EPOCHS] == 2 for t in low)
    assert all(len(t.intermediate_values) <= 2 for t in low)  # trained 2 of the 6 epochs
    assert continued, "no candidate was continued in the exploit part of the budget"
    checked = 0
    for t in continued:
        # all 4 remaining epochs, or (a partial continuation) those the time left held
        epochs = t.user_attrs.get(records.CONTINUE_EPOCHS, 4)
        assert t.user_attrs[records.FIDELITY] == pytest.approx((2 + epochs) / 6)
        assert t.user_attrs[records.EPOCHS_RUN] <= epochs
        source = result.study.trials[t.user_attrs[records.CONTINUED_FROM]]
        assert source.user_attrs[records.FIDELITY] < 1.0 and source.params == t.params
        # it started from the source's trained weights, not from scratch: after its epochs of
        # training its weights are still far closer to the source's than a fresh start's are
        if records.MODEL_ARTIFACT in t.user_attrs:
            start, end = saved_model(result, source), saved_model(result, t)
            fresh = keras.models.clone_model(start)  # the same layers, newly initialised
            moved = distance(end.trainable_weights, start.trainable_weights)
            assert moved < 0.5 * distance(fresh.trainable_weights, start.trainable_weights)
            checked += 1
    assert checked, "no continuation kept its model"
    # the MLflow runs carry the fidelity too
    run = tracking.run_facts(result.tracking_uri, low[0].user_attrs[records.MLFLOW_RUN_ID])
    assert run["status"] == "FINISHED"
    # the best trial is one of the highest fidelity completed (a continuation when any completed)
    completed = [t.user_attrs[records.FIDELITY] for t in trials if t.state.name == "COMPLETE"]
    assert result.best_trial.user_attrs[records.FIDELITY] == max(completed)
    # the budget holds: the last trial ended within the timeout plus one epoch (plus saving slack)
    ended = max(t.datetime_complete.timestamp() for t in trials)
    epoch = max(
        (t.datetime_complete - t.datetime_start).total_seconds() / max(1, t.user_attrs.get(records.EPOCHS_RUN, 1))
        for t in trials
    )
    assert ended - started <= timeout + epoch + 2.0


def saved_model(result, trial):
    import tempfile

    import keras

    from automl import records, tracking

    run_id, artifact = trial.user_attrs[records.MLFLOW_RUN_ID], trial.user_attrs[records.MODEL_ARTIFACT]
    path = tracking.download_artifact(result.tracking_uri, run_id, artifact, tempfile.mkdtemp())
    return keras.saving.load_model(path, safe_mode=True)


def distance(a, b) -> float:
    import numpy as np

    return float(np.sqrt(sum(np.sum((np.asarray(x) - np.asarray(y)) ** 2) for x, y in zip(a, b))))


def test_without_a_timeout_the_budget_schedule_trains_plain_trials(stores, tiny_space, digits_small):
    from automl import Search, records

    result = Search(
        tiny_space, study_name="plain", max_trials=2, seed=0, verbose=False, isolate=False, schedule="budget", **stores
    ).fit(data=digits_small, epochs=2)
    assert all(records.FIDELITY not in t.user_attrs for t in result.study.trials)
    with pytest.raises(ValueError, match="schedule must be one of"):
        Search(tiny_space, schedule="fast")


def test_a_short_trial_still_training_when_only_the_best_candidates_continuation_fits_is_pruned(
    stores, tiny_space, digits_small
):
    """A 60 s ucr_ACSF1 search ran one slow random configuration from 12 s to 75-87 s, and the
    best candidate was never continued (bench/RESULTS.md "Suite"): a short trial now carries an
    explore deadline, the budget's end less the best candidate's continuation, and is pruned after
    an epoch when another one would end past it, or mid-epoch once it has passed."""
    from automl import records
    from automl.records import TrialSettings
    from automl.schedule import BudgetSchedule
    from automl.tracking import Tracker
    from automl.trial import TrialRunner

    low = {
        records.FIDELITY: 1 / 3,
        records.MODEL_ARTIFACT: "m",
        records.EPOCH_SECONDS: [2.0, 1.0, 1.0],
        records.BEST_EPOCHS: 2,
    }
    candidate = finished_trial(0, attrs=low, seconds=9)
    schedule = BudgetSchedule(timeout=60, epochs=10)
    study = optuna.create_study(direction="minimize")
    study.add_trial(candidate)
    short = study.ask()
    schedule.before_trial(short)
    deadline = short.user_attrs[records.EXPLORE_DEADLINE]
    assert deadline == pytest.approx(schedule.started + 60 - schedule._needed(candidate, study))
    assert deadline < schedule.started + 60 - 8  # 2 s + 6 x 1 s of epochs + the set-up are kept
    study.enqueue_trial(candidate.params, user_attrs={records.CONTINUED_FROM: 0})
    continuation = study.ask()
    schedule.before_trial(continuation)
    assert records.EXPLORE_DEADLINE not in continuation.user_attrs  # a continuation trains to the end
    assert continuation.user_attrs[records.EPOCH_OFFSET] == 2  # it loads its source's best epoch, not its third
    later = study.ask()  # the only candidate is being continued: nothing to keep time for
    schedule.before_trial(later)
    assert records.EXPLORE_DEADLINE not in later.user_attrs

    # real training: with its explore deadline past, a short trial stops after its first batch
    # (no validation pass, nothing reported), PRUNED and tagged; with time to spare it trains its three
    tracker = Tracker(stores["tracking_uri"], experiment="explore-deadline")
    real = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    tracker.start_search(real, {}, {})
    settings = TrialSettings(objective="val_loss", direction="minimize", epochs=6, patience=None, diagnostics=False)
    runner = TrialRunner(tiny_space, digits_small, settings, tracker, "explore-deadline")
    for explore_deadline in (time.time() - 1, time.time() + 3600):
        attrs = {records.TRIAL_EPOCHS: 3, records.FIDELITY: 0.5, records.EXPLORE_DEADLINE: explore_deadline}
        real.enqueue_trial({}, user_attrs=attrs)
    real.optimize(runner, n_trials=2)
    late, on_time = real.trials
    assert late.state == optuna.trial.TrialState.PRUNED and not late.intermediate_values
    _, runs = mlflow_runs(tracker.tracking_uri)
    late_run = next(r for r in runs if r.info.run_id == late.user_attrs[records.MLFLOW_RUN_ID])
    assert late_run.data.tags[records.TAG_STOPPED_BY] == "schedule" and late_run.info.status == "FINISHED"
    assert late_run.data.tags[records.TAG_PRUNED_AT] == "1"
    assert on_time.state == optuna.trial.TrialState.COMPLETE and on_time.user_attrs[records.EPOCHS_RUN] == 3


def test_at_the_searchs_deadline_the_epoch_in_flight_ends_and_is_validated(stores, tiny_space, digits_small):
    """An epoch over a large table outlasted a whole 60 s budget (86 s; the search returned after
    190 s): at the search's deadline training stops after the batch in flight, Keras validates what
    was trained, and the trial completes with it (one step, not an epoch of them). The trial's
    monitor does it, so a KerasTuner hypermodel's trials stop so too."""
    from automl import records
    from automl.records import TrialSettings
    from automl.tracking import Tracker
    from automl.trial import TrialRunner

    tracker = Tracker(stores["tracking_uri"], experiment="search-deadline")
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    tracker.start_search(study, {}, {})
    settings = TrialSettings(
        objective="val_loss", direction="minimize", epochs=6, patience=None, diagnostics=False, deadline=time.time() - 1
    )
    study.optimize(TrialRunner(tiny_space, digits_small, settings, tracker, "search-deadline"), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs[records.EPOCHS_RUN] == 1
    assert trial.value == pytest.approx(trial.user_attrs[records.VAL_METRICS]["val_loss"])
    import mlflow

    from automl.saved import load_model

    saved = mlflow.artifacts.download_artifacts(
        run_id=trial.user_attrs[records.MLFLOW_RUN_ID],
        artifact_path=trial.user_attrs[records.MODEL_ARTIFACT],
        tracking_uri=stores["tracking_uri"],
    )
    assert int(load_model(saved).optimizer.iterations) == 1  # the epoch in flight stopped after one batch


def test_a_continuation_whose_epochs_all_do_worse_keeps_the_weights_it_loaded(stores, digits_small):
    """An sms_spam search at 5064f0c continued its best candidate (validation loss 0.052 after its
    short trial) and the continuation ended at 0.118: a fresh optimiser's epochs all did worse, the
    best of them was kept, and that worse model became the search's best trial (bench/RESULTS.md
    "Suite"). A continuation's epochs must now beat the weights it loaded; when none does, those
    weights are restored and their figures stand. Here a continuation at a learning rate that wrecks
    every epoch keeps its source's model; one at the source's own rate trains on."""
    import tempfile

    import numpy as np

    from automl import records, tracking
    from automl.records import TrialSettings
    from automl.space import Categorical, SearchSpace
    from automl.tracking import Tracker
    from automl.trial import TrialRunner

    space = SearchSpace(
        name="continue",
        architecture={
            "blocks": {"repeat": 1, "each": {"block": "conv", "filters": 8, "kernel_size": 3, "pooling": "max"}},
            "pool": {"block": "global_pool", "mode": "flatten"},
        },
        training={"optimizer": "adam", "learning_rate": Categorical(choices=[0.03, 0.5]), "batch_size": 16},
    )
    tracker = Tracker(stores["tracking_uri"], experiment="continue")
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    tracker.start_search(study, {}, {})
    settings = TrialSettings("val_loss", "minimize", epochs=8, seed=0, keep_top=3, diagnostics=False)
    runner = TrialRunner(space, digits_small, settings, tracker, "continue")
    study.enqueue_trial({"learning_rate": 0.03}, user_attrs={records.TRIAL_EPOCHS: 4, records.FIDELITY: 0.5})
    study.optimize(runner, n_trials=1)
    source = study.trials[0]
    offset = source.user_attrs[records.BEST_EPOCHS]  # what BudgetSchedule.before_trial records
    for rate in (0.5, 0.03):
        attrs = {
            records.CONTINUED_FROM: 0,
            records.TRIAL_EPOCHS: 4,
            records.FIDELITY: 1.0,
            records.EPOCH_OFFSET: offset,
        }
        study.enqueue_trial({"learning_rate": rate}, user_attrs=attrs)
    study.optimize(runner, n_trials=2)
    wrecked, trained = study.trials[1:]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    def predictions(trial):
        attrs = trial.user_attrs
        folder = tempfile.mkdtemp()
        path = tracking.download_artifact(
            tracker.tracking_uri, attrs[records.MLFLOW_RUN_ID], attrs[records.VAL_PREDICTIONS], folder
        )
        return np.load(path)

    _, runs = mlflow_runs(tracker.tracking_uri)
    metrics = {r.info.run_id: r.data.metrics for r in runs}

    def last_epoch_val_loss(trial):
        return metrics[trial.user_attrs[records.MLFLOW_RUN_ID]]["final_val_loss"]

    # every epoch at 0.5 did far worse than the loaded weights, yet the trial reports and keeps them
    assert last_epoch_val_loss(wrecked) > 2 * source.value
    assert wrecked.value == pytest.approx(source.value, rel=1e-4)
    assert wrecked.user_attrs[records.KEPT_SAVED_WEIGHTS] is True
    assert wrecked.user_attrs[records.BEST_EPOCHS] == source.user_attrs[records.BEST_EPOCHS]
    np.testing.assert_allclose(predictions(wrecked), predictions(source), atol=1e-5)
    # at the source's own rate the epochs improve on it: trained on, not kept
    assert trained.value < source.value and records.KEPT_SAVED_WEIGHTS not in trained.user_attrs
    assert trained.user_attrs[records.BEST_EPOCHS] > offset


def test_under_a_trial_cap_the_last_trials_continue_the_best(stores, tiny_space, digits_small):
    """max_trials and a timeout: exploring ends when the trials left are as many as the candidates,
    so the cap's last trials are continuations and the result is a full-length model, not a short one."""
    from automl import Search, records

    result = Search(
        tiny_space,
        study_name="capped",
        max_trials=6,
        timeout=300,  # far more than 6 trials need: the cap ends this search
        seed=0,
        verbose=False,
        isolate=False,
        schedule="budget",
        **stores,
    ).fit(data=digits_small, epochs=6)
    trials = [t for t in result.study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(trials) == 6
    continued = [t for t in trials if records.CONTINUED_FROM in t.user_attrs]
    assert continued and trials[-1] in continued, [t.user_attrs.get(records.FIDELITY) for t in trials]
    assert result.best_trial.user_attrs[records.FIDELITY] == 1.0
    assert result.best_trial.user_attrs[records.EPOCH_OFFSET] + result.best_trial.user_attrs[records.EPOCHS_RUN] > 2
