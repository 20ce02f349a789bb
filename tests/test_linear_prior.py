"""`text_ngrams(linear="fitted")`: the model starts as a logistic (or ridge) regression of its n-grams
solved exactly with the validation-chosen strength, training keeps it unless an epoch beats it, and a
refit solves it again on training + validation rows. `tabular(linear="fitted")`: the same on a
table's standardised numbers, missing-value flags and one-hot categories."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import mlflow_runs
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss

from automl import records
from automl.blocks.linear import STRENGTHS
from automl.builder import build_model
from automl.data import make_dataset
from automl.records import TrialSettings
from automl.training import fit_model

ARCH = {
    "text": {
        "block": "text_ngrams",
        "split": "words",
        "ngrams": 1,
        "max_tokens": 60,
        "output": "tf_idf",
        "linear": "fitted",
    },
    "head": {"block": "dense", "depth": 0},
}


def reviews(n: int, seed: int, flip: float = 0.2):
    """Sentences whose sentiment word decides the label, a fifth of the labels flipped (so the L2
    strength matters)."""
    rng = np.random.default_rng(seed)
    words = {"pos": ["good", "great", "fine", "superb"], "neg": ["bad", "poor", "awful", "dull"]}
    filler = ["the", "film", "plot", "a", "cast", "was", "story", "acting"]
    labels = rng.choice(["pos", "neg"], n)
    x = [" ".join([*rng.choice(words[lab], 2), *rng.choice(filler, 4)]) for lab in labels]
    noisy = np.where(rng.random(n) < flip, np.where(labels == "pos", "neg", "pos"), labels)
    return np.array(x, dtype=object), noisy


@pytest.fixture(scope="module")
def data():
    x, y = reviews(120, 0)
    return make_dataset(x, y, validation_data=reviews(60, 1), name="reviews")


def features(model, texts) -> np.ndarray:
    return np.asarray(model.get_layer("ngrams")(np.asarray(texts, dtype=object)))


def expected_logistic(model, data):
    """scikit-learn's regression on the model's own n-gram features, strength chosen on validation."""
    x, x_val = features(model, data.x_train), features(model, data.x_val)
    fits = {c: LogisticRegression(C=c, max_iter=1000).fit(x, data.y_train) for c in STRENGTHS}
    losses = {c: log_loss(data.y_val, m.predict_proba(x_val)) for c, m in fits.items()}
    best = min(losses, key=lambda c: (losses[c], c))
    return fits[best], best, losses[best]


def test_the_model_starts_as_the_exactly_fitted_logistic_regression(data, tmp_path):
    model = build_model(ARCH, data)
    fitted, strength, _ = expected_logistic(model, data)
    assert strength != 1.0  # not scikit-learn's default: the model's strength was chosen on validation
    ours = model.predict(np.asarray(data.x_val, dtype=object), verbose=0)
    np.testing.assert_allclose(ours, fitted.predict_proba(features(model, data.x_val)), atol=1e-4)
    path = tmp_path / "linear.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again.predict(np.asarray(data.x_val, dtype=object), verbose=0), ours, atol=1e-6)


def test_training_keeps_the_fitted_start_unless_an_epoch_beats_it(data):
    model = build_model(ARCH, data)
    before = model.predict(np.asarray(data.x_val, dtype=object), verbose=0)
    settings = TrialSettings(objective="val_loss", direction="minimize", epochs=3, patience=2)
    history = fit_model(model, data, {"optimizer": "sgd", "learning_rate": 5.0, "batch_size": 8}, settings, [])
    start = log_loss(data.y_val, before)
    assert min(history.history["val_loss"]) > start  # every epoch made it worse...
    after = model.predict(np.asarray(data.x_val, dtype=object), verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-6)  # ...so the fitted start was restored


def test_ridge_start_for_a_text_regression():
    x, _ = reviews(80, 2)
    score = np.array([s.count("good") + s.count("great") - s.count("bad") for s in x], float)
    x_val, _ = reviews(40, 3)
    y_val = np.array([s.count("good") + s.count("great") - s.count("bad") for s in x_val], float)
    data = make_dataset(x, score, validation_data=(x_val, y_val), task="regression", name="scores")
    model = build_model(ARCH, data)
    xs, xs_val = features(model, data.x_train), features(model, data.x_val)
    fits = {c: Ridge(alpha=1.0 / c).fit(xs, data.y_train) for c in STRENGTHS}
    errors = {c: np.mean((m.predict(xs_val) - data.y_val) ** 2) for c, m in fits.items()}
    best = fits[min(errors, key=lambda c: (errors[c], c))]
    ours = model.predict(np.asarray(x_val, dtype=object), verbose=0).ravel()
    np.testing.assert_allclose(ours, best.predict(xs_val), atol=1e-3)


def chosen_fit(make, x, y, x_val, y_val, error):
    """scikit-learn's fits over STRENGTHS, the one with the lowest validation error (ties: stronger)."""
    fits = {c: make(c).fit(x, y) for c in STRENGTHS}
    errors = {c: error(m, x_val, y_val) for c, m in fits.items()}
    return fits[min(errors, key=lambda c: (errors[c], c))]


def test_a_table_model_starts_as_the_logistic_regression_of_its_standardised_and_one_hot_columns(tmp_path):
    from seq_text_checks import table

    (x, y), (x_val, y_val) = table(160, 0), table(80, 1)
    data = make_dataset(x, y, validation_data=(x_val, y_val), name="table")
    arch = {
        "columns": {"block": "tabular", "categorical": "embedding", "linear": "fitted"},
        "layers": [{"block": "dense", "units": 8}],
    }
    model = build_model(arch, data)
    inputs = keras.Model(model.inputs, model.get_layer("linear_inputs").output)
    xs, xs_val = (inputs.predict(data.x_train, verbose=0), inputs.predict(data.x_val, verbose=0))
    # what the linear model reads: two standardised numbers, income's missing flag, two one-hot columns
    numbers = xs[:, :2]
    np.testing.assert_allclose(numbers.mean(axis=0), 0.0, atol=1e-5)
    assert np.all(xs[:, 2] == np.isnan(np.asarray(x["income"], float)))
    assert set(np.unique(xs[:, 3:])) == {0.0, 1.0} and xs.shape[1] > 5  # categories one-hot, not embedded
    assert np.all(xs[:, 3:].sum(axis=1) == 2)  # one slot per categorical column and row
    loss = lambda m, a, b: log_loss(b, m.predict_proba(a))  # noqa: E731
    fitted = chosen_fit(lambda c: LogisticRegression(C=c, max_iter=1000), xs, data.y_train, xs_val, data.y_val, loss)
    ours = model.predict(data.x_val, verbose=0)
    np.testing.assert_allclose(ours, fitted.predict_proba(xs_val), atol=1e-4)  # the head adds nothing yet
    assert fitted.score(xs_val, data.y_val) > 0.6  # a real fit, not chance
    path = tmp_path / "table.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again.predict(data.x_val, verbose=0), ours, atol=1e-6)


def test_a_numeric_matrix_regression_starts_as_the_ridge_regression_of_its_standardised_columns():
    rng = np.random.default_rng(0)
    x, x_val = rng.normal(5.0, 3.0, (120, 6)), rng.normal(5.0, 3.0, (60, 6))
    w = np.array([2.0, -1.0, 0.5, 0.0, 0.0, 3.0])
    y, y_val = x @ w + rng.normal(0, 4.0, 120), x_val @ w + rng.normal(0, 4.0, 60)
    data = make_dataset(x, y, validation_data=(x_val, y_val), task="regression", name="matrix")
    model = build_model(
        {"columns": {"block": "tabular", "linear": "fitted"}, "layers": [{"block": "dense", "units": 8}]}, data
    )
    z = lambda a: (a - x.mean(axis=0)) / x.std(axis=0)  # noqa: E731
    error = lambda m, a, b: np.mean((m.predict(a) - b) ** 2)  # noqa: E731
    fitted = chosen_fit(lambda c: Ridge(alpha=1.0 / c), z(x), y, z(x_val), y_val, error)
    ours = model.predict(x_val.astype("float32"), verbose=0).ravel()
    np.testing.assert_allclose(ours, fitted.predict(z(x_val)), atol=1e-3)


def test_a_table_has_one_starting_point_trees_or_linear():
    from seq_text_checks import table_data

    with pytest.raises(ValueError, match="trees and linear"):
        build_model({"columns": {"block": "tabular", "trees": "boosted", "linear": "fitted"}}, table_data())


def test_a_search_keeps_the_fitted_start_and_a_refit_solves_it_on_both_splits(data, stores):
    from automl.refit import refit
    from automl.search import Search
    from automl.space import SearchSpace

    space = SearchSpace(
        name="linear", architecture=ARCH, training={"optimizer": "sgd", "learning_rate": 5.0, "batch_size": 8}
    )
    result = Search(space, study_name="linear", max_trials=1, seed=0, verbose=False, isolate=False, **stores).fit(
        data=data, epochs=3
    )
    trial = result.best_trial
    model = result.best_model()
    fitted, strength, _ = expected_logistic(model, data)
    assert result.objective == "val_accuracy"
    assert trial.user_attrs[records.KEPT_FITTED_START] is True
    assert trial.user_attrs[records.BEST_EPOCHS] == 0
    accuracy = fitted.score(features(model, data.x_val), data.y_val)
    assert trial.value == pytest.approx(accuracy, abs=1e-6)  # the fitted start's figure, not an epoch's

    refitted, info = refit(result, data, [trial.number], [1.0], space=space)
    assert info["epochs"] == [0] and info["train_samples"] == len(data.y_train) + len(data.y_val)
    both = np.concatenate([data.x_train, data.x_val])
    xs = features(refitted, both)
    expected = LogisticRegression(C=strength, max_iter=1000).fit(xs, np.concatenate([data.y_train, data.y_val]))
    probe = np.asarray(data.x_val[:10], dtype=object)
    trained_on_train = model.predict(probe, verbose=0)
    assert np.abs(refitted.predict(probe, verbose=0) - trained_on_train).max() > 0.01  # solved again
    np.testing.assert_allclose(
        refitted.predict(probe, verbose=0), expected.predict_proba(features(refitted, probe)), atol=1e-3
    )


def test_the_pruner_judges_the_fitted_start_a_trial_keeps_not_a_worse_epoch(data, stores):
    """Training keeps the fitted start unless an epoch beats it, so the pruner must see what the
    trial holds: here every epoch of the fitted trial (SGD at learning rate 5) is worse than two
    weak trials, while its start is better. Successive halving (rung 0 after epoch 2, the best of
    three goes on) prunes it when it reports the raw epochs; it is kept when it reports its start."""
    from automl.search import Search
    from automl.space import Categorical, SearchSpace

    arch = {"text": {**ARCH["text"], "linear": Categorical(choices=["none", "fitted"])}, "head": ARCH["head"]}
    space = SearchSpace(
        name="pruned",
        architecture=arch,
        training={"optimizer": "sgd", "learning_rate": Categorical(choices=[1e-4, 2e-4, 5.0]), "batch_size": 8},
    )
    weak = [{"text.linear": "none", "learning_rate": lr} for lr in (1e-4, 2e-4)]
    result = Search(
        space,
        study_name="pruned",
        max_trials=3,
        seed=0,
        objective="val_loss",
        pruner="successive-halving",
        enqueue=[*weak, {"text.linear": "fitted", "learning_rate": 5.0}],
        verbose=False,
        isolate=False,
        **stores,
    ).fit(data=data, epochs=3)
    trials = sorted(result.study.trials, key=lambda t: t.number)
    assert [t.params["text.linear"] for t in trials] == ["none", "none", "fitted"]
    fitted = trials[2]
    client, _ = mlflow_runs(stores["tracking_uri"])
    run = fitted.user_attrs[records.MLFLOW_RUN_ID]
    epochs = [m.value for m in sorted(client.get_metric_history(run, "val_loss"), key=lambda m: m.step)]
    weak_at_rung = [t.intermediate_values[1] for t in trials[:2]]
    assert epochs[1] > max(weak_at_rung)  # its second epoch alone would be pruned...
    assert fitted.state.name == "COMPLETE" and fitted.user_attrs[records.KEPT_FITTED_START] is True
    assert fitted.value < min(weak_at_rung)  # ...but what it holds is the best of the three
    assert fitted.intermediate_values[1] == pytest.approx(fitted.value)
    assert result.best_trial.number == fitted.number


def test_a_short_trial_that_early_stopping_ended_on_its_fitted_start_is_not_continued(data, stores):
    """Under the budget schedule a short trial (3 of 9 epochs) whose every epoch is worse than its
    fitted start (SGD at learning rate 2 or 5) is ended by early stopping (patience 3) as a
    full-length run would be: it keeps the start at fidelity 1.0, ranks with full trials, and the
    continuations go to other candidates instead of training the same failing epochs again from the
    same start."""
    from automl.ranking import leaderboard_trials
    from automl.search import Search
    from automl.space import Categorical, SearchSpace

    arch = {"text": {**ARCH["text"], "linear": Categorical(choices=["none", "fitted"])}, "head": ARCH["head"]}
    space = SearchSpace(
        name="settled",
        architecture=arch,
        training={"optimizer": "sgd", "learning_rate": Categorical(choices=[2.0, 5.0]), "batch_size": 8},
    )
    result = Search(
        space,
        study_name="settled",
        max_trials=60,
        timeout=20,
        seed=0,
        objective="val_loss",
        schedule="budget",
        pruner="none",  # the weak trials complete: candidates to continue
        enqueue=[{"text.linear": "fitted", "learning_rate": 5.0}, {"text.linear": "none", "learning_rate": 2.0}],
        verbose=False,
        isolate=False,
        **stores,
    ).fit(data=data, epochs=9)
    trials = sorted(result.study.trials, key=lambda t: t.number)
    fitted = trials[0]
    assert fitted.state.name == "COMPLETE" and fitted.user_attrs[records.KEPT_FITTED_START] is True
    assert fitted.user_attrs[records.TRIAL_EPOCHS] == 3 and fitted.user_attrs[records.EPOCHS_RUN] == 3
    assert fitted.user_attrs[records.FIDELITY] == 1.0 and fitted.user_attrs[records.SETTLED_EARLY] is True
    client, _ = mlflow_runs(stores["tracking_uri"])
    tags = client.get_run(fitted.user_attrs[records.MLFLOW_RUN_ID]).data.tags
    assert float(tags[records.TAG_FIDELITY]) == 1.0
    continued = [t.user_attrs[records.CONTINUED_FROM] for t in trials if records.CONTINUED_FROM in t.user_attrs]
    assert continued, "the schedule continued no candidate"
    # the continuations went to trials that can still learn (at 5c26fa4 they went to the three
    # fitted trials, each giving the same model again)
    assert all(not trials[n].user_attrs.get(records.KEPT_FITTED_START) for n in continued)
    # it ranks with the full-fidelity trials, before every short one
    ranked = [t.number for t in leaderboard_trials(result.study)]
    short = [t.number for t in trials if t.number in ranked and t.user_attrs.get(records.FIDELITY, 1.0) < 1.0]
    assert short and ranked.index(fitted.number) < min(ranked.index(n) for n in short)
