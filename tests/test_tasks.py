"""Task classes (automl/tasks.py), the AutoKeras-style API: real tiny searches, real MLflow stores."""
import numpy as np
import pandas as pd
import pytest
from conftest import mlflow_runs

import automl


def _options(stores, **extra):
    return {"max_trials": 2, "seed": 0, "epochs": 3, "verbose": False, **stores, **extra}


def _table(n: int, rng) -> tuple[pd.DataFrame, np.ndarray]:
    """Numeric, categorical and missing values; the label follows x + the colour."""
    colour = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "noise": rng.normal(size=n), "colour": colour})
    df.loc[rng.choice(n, n // 10, replace=False), "noise"] = np.nan
    y = np.where(x + (colour == "red") * 1.5 > 0.5, "yes", "no")
    return df, y


def test_tabular_classifier_fits_predicts_in_user_labels_and_logs_every_trial(stores, rng):
    df, y = _table(240, rng)
    clf = automl.TabularClassifier(study_name="table", **_options(stores, epochs=10))
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict(df)
    result = clf.fit(df, y, validation_split=0.25)

    # the default objective of a task class is val_loss (minimised), also for classification
    assert result.objective == "val_loss" and result.study.direction.name == "MINIMIZE"
    assert len(result.study.trials) == 2 and result.study.study_name == "table"
    model = clf.best_model()
    loss = model.evaluate(clf.data.x_val, clf.data.y_val, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(result.best_value, rel=1e-4)  # the best epoch's weights came back

    predicted = clf.predict(df.head(50))
    assert predicted.shape == (50,) and set(predicted) <= {"yes", "no"}
    assert clf.classes_ == ["no", "yes"]
    proba = clf.predict_proba(df.head(50))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert list(np.asarray(clf.classes_)[proba.argmax(axis=1)]) == list(predicted)
    scores = clf.evaluate(df, y)
    assert scores["accuracy"] > 0.75  # the rule is simple: the model learnt it, not the majority class
    with pytest.raises(automl.DataError, match="x has 240 samples but y has 10"):
        clf.evaluate(df, y[:10])

    _, runs = mlflow_runs(stores["tracking_uri"])
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(trials) == 2 and all("num_layers" in r.data.params for r in trials)
    assert all("val_loss" in r.data.metrics and "val_accuracy" in r.data.metrics for r in trials)


def test_accuracy_objective_on_request_and_a_refit_resumes_the_study(stores, rng):
    df, y = _table(160, rng)
    clf = automl.TabularClassifier(objective="val_accuracy", **_options(stores, max_trials=1))
    first = clf.fit(df, y, validation_split=0.25)
    assert first.study.direction.name == "MAXIMIZE"
    clf.search.max_trials = 2
    second = clf.fit(df, y, validation_split=0.25)  # same data: the same study, one more trial
    assert second.study.study_name == first.study.study_name and len(second.study.trials) == 2


def test_tabular_regressor_predicts_numbers_in_target_units(stores):
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    reg = automl.TabularRegressor(**_options(stores, epochs=8))
    reg.fit(x[:300], y[:300], validation_data=(x[300:], y[300:]))
    predicted = reg.predict(x[300:])
    assert predicted.shape == (len(x) - 300,) and predicted.dtype.kind == "f"
    mae = float(np.mean(np.abs(predicted - y[300:])))
    assert mae < float(np.mean(np.abs(y[300:] - y[:300].mean())))  # better than the mean
    with pytest.raises(TypeError, match="for classifiers"):
        reg.predict_proba(x[:5])


def test_text_classifier_takes_raw_strings_and_exports(stores, tmp_path):
    spam = [f"win a free prize now {i} claim cash" for i in range(40)]
    ham = [f"see you at lunch on day {i} with the team" for i in range(40)]
    texts, labels = spam + ham, ["spam"] * 40 + ["ham"] * 40
    clf = automl.TextClassifier(**_options(stores, max_trials=1, epochs=10))
    clf.fit(texts, labels, validation_split=0.25)
    assert list(clf.predict(["claim your free prize", "lunch with the team"])) == ["spam", "ham"]
    report = clf.export(tmp_path / "out", formats="keras,float32", latency_runs=2, register=False)
    assert set(report.variants) == {"keras", "float32"}
    assert (tmp_path / "out" / "model.keras").exists() and (tmp_path / "out" / "model_float32.tflite").exists()
    assert report.variants["keras"]["accuracy"] >= 0.9
    assert report.variants["float32"]["accuracy"] == pytest.approx(report.variants["keras"]["accuracy"])


def test_image_and_sequence_classifiers_on_arrays(stores, digits_small):
    images = digits_small.x_train[:160]
    labels = digits_small.y_train[:160]
    clf = automl.ImageClassifier(**_options(stores, max_trials=1, epochs=2), study_name="digits")
    clf.fit(images, labels, validation_split=0.25)
    assert clf.predict(images[:7]).shape == (7,)

    rng = np.random.default_rng(1)
    steps = np.linspace(0, 4 * np.pi, 24)
    sequences = np.stack([np.sin(steps * (1 + k % 2)) + 0.1 * rng.normal(size=24) for k in range(80)])[..., None]
    kinds = np.array(["slow", "fast"] * 40)
    seq = automl.SequenceClassifier(**_options(stores, max_trials=1, epochs=2), study_name="waves")
    seq.fit(sequences.astype("float32"), kinds, validation_split=0.25)
    assert set(seq.predict(sequences[:10])) <= {"slow", "fast"}
