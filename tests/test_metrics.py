"""Balanced accuracy, macro F1 and AUC (automl.metrics): per epoch they equal scikit-learn's functions
on the validation split, and a search optimises them (single and multi-objective)."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score


def _imbalanced(digits_small, classes):
    y = digits_small.y_train
    keep = np.flatnonzero((y < classes) & ((y == 0) | (np.arange(len(y)) % 3 == 0)))  # class 0 three times as common
    return digits_small.x_train[keep] / 16.0, y[keep]


@pytest.mark.parametrize("classes", [2, 4])
def test_the_metrics_equal_scikit_learn_on_the_validation_split(digits_small, classes):
    import keras

    from automl.training import loss_and_metrics

    x, y = _imbalanced(digits_small, classes)
    x_val, y_val = x[::2], y[::2]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(classes, "softmax")])
    loss, metrics = loss_and_metrics("classification", None, ["val_balanced_accuracy", "val_f1", "auc"], classes)
    model.compile(keras.optimizers.Adam(0.01), loss, metrics=metrics)
    logs = model.fit(x, y, validation_data=(x_val, y_val), epochs=5, batch_size=16, verbose=0).history
    probs = model.predict(x_val, verbose=0)
    pred = probs.argmax(1)
    assert logs["val_balanced_accuracy"][-1] == pytest.approx(balanced_accuracy_score(y_val, pred), abs=1e-6)
    assert logs["val_f1"][-1] == pytest.approx(f1_score(y_val, pred, average="macro"), abs=1e-6)
    auc = roc_auc_score(y_val, probs[:, 1]) if classes == 2 else roc_auc_score(y_val, probs, multi_class="ovr")
    assert logs["val_auc"][-1] == pytest.approx(auc, abs=0.01)  # Keras' thresholds approximate the curve
    assert balanced_accuracy_score(y_val, pred) != pytest.approx(float((pred == y_val).mean()), abs=1e-3)


def test_a_search_optimises_balanced_accuracy_and_f1(digits_small, stores, tiny_space):
    from automl import Search

    single = Search(
        tiny_space, study_name="bal", objective="val_balanced_accuracy", max_trials=1, verbose=False, **stores
    ).fit(data=digits_small, epochs=2)
    trial = single.study.best_trial
    assert single.study.direction.name == "MAXIMIZE" and 0 < trial.value <= 1
    assert trial.value != trial.user_attrs.get("tiebreak_val_loss")
    multi = Search(
        tiny_space, study_name="f1", objectives=["val_f1", "param_count"], max_trials=1, verbose=False, **stores
    ).fit(data=digits_small, epochs=2)
    (trial,) = multi.study.trials
    assert trial.state.name == "COMPLETE" and 0 < trial.values[0] <= 1
    assert [d.name for d in multi.study.directions] == ["MAXIMIZE", "MINIMIZE"]
