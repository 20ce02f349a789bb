"""Classification metrics that accuracy hides: balanced accuracy, macro F1 and AUC, as Keras metrics
over integer labels, logged per epoch (`val_balanced_accuracy`, `val_f1`, `val_auc`) so a search can
optimise them and early stopping can follow them.

Why: on imbalanced data accuracy rewards predicting the common class (95 % "no" is 95 % accurate).
Balanced accuracy (mean recall per class) and macro F1 weigh every class alike; AUC judges the
ranking of the probabilities, not one threshold. Each equals scikit-learn's function of the same
name on the validation split (AUC up to Keras' 200-threshold approximation). They are compiled in
only when an objective or constraint names them: training pays nothing otherwise.
"""

from __future__ import annotations

import keras
from keras import ops

EXTRA_METRICS = ("balanced_accuracy", "f1", "auc")


@keras.saving.register_keras_serializable(package="automl")
class ConfusionScore(keras.metrics.Metric):
    """Balanced accuracy or macro F1 from a confusion matrix accumulated over the epoch's batches."""

    def __init__(self, num_classes: int, score: str = "balanced_accuracy", name: str | None = None, **kwargs):
        super().__init__(name=name or score, **kwargs)
        if score not in ("balanced_accuracy", "f1"):
            raise ValueError(f"score must be balanced_accuracy or f1, not {score!r}")
        self.num_classes, self.score = int(num_classes), score
        self.matrix = self.add_variable(shape=(self.num_classes, self.num_classes), initializer="zeros", name="matrix")

    def update_state(self, y_true, y_pred, sample_weight=None):
        c = self.num_classes
        true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        pred = ops.cast(ops.argmax(ops.reshape(y_pred, (-1, c)), axis=-1), "int32")
        weight = ops.ones_like(true, dtype="float32") if sample_weight is None else ops.reshape(sample_weight, (-1,))
        cells = ops.one_hot(true * c + pred, c * c) * ops.cast(ops.expand_dims(weight, -1), "float32")
        self.matrix.assign_add(ops.reshape(ops.sum(cells, axis=0), (c, c)))

    def result(self):
        m = self.matrix
        tp, actual, predicted = ops.diagonal(m), ops.sum(m, axis=1), ops.sum(m, axis=0)
        if self.score == "balanced_accuracy":  # mean recall over the classes that occur
            present = ops.cast(actual > 0, "float32")
            recall = ops.divide_no_nan(tp, actual)
            return ops.divide_no_nan(ops.sum(recall * present), ops.sum(present))
        present = ops.cast((actual + predicted) > 0, "float32")  # scikit-learn: labels in y_true or y_pred
        f1 = ops.divide_no_nan(2 * tp, actual + predicted)
        return ops.divide_no_nan(ops.sum(f1 * present), ops.sum(present))

    def reset_state(self):
        self.matrix.assign(ops.zeros_like(self.matrix))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "score": self.score}


@keras.saving.register_keras_serializable(package="automl")
class SparseAUC(keras.metrics.AUC):
    """ROC AUC from integer labels: of class 1's probability for two classes, else the mean over classes
    of one-vs-rest AUC (scikit-learn's `roc_auc_score(..., multi_class="ovr", average="macro")`)."""

    def __init__(self, num_classes: int, name: str = "auc", **kwargs):
        self.num_classes = int(num_classes)
        binary = self.num_classes == 2
        kwargs.setdefault("num_thresholds", 500)
        super().__init__(name=name, multi_label=not binary, num_labels=None if binary else self.num_classes, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        if self.num_classes == 2:
            return super().update_state(true, ops.reshape(y_pred, (-1, 2))[:, 1], sample_weight)
        return super().update_state(ops.one_hot(true, self.num_classes), y_pred, sample_weight)

    def get_config(self):
        config = super().get_config()
        for key in ("multi_label", "num_labels"):
            config.pop(key, None)
        return {**config, "num_classes": self.num_classes}


def extra_metrics(names, num_classes: int | None) -> list:
    """The metric objects for the names among EXTRA_METRICS (`val_` prefixes allowed)."""
    wanted = {str(n).removeprefix("val_") for n in names} & set(EXTRA_METRICS)
    if not wanted or not num_classes:
        return []
    out: list = [ConfusionScore(num_classes, s) for s in ("balanced_accuracy", "f1") if s in wanted]
    if "auc" in wanted:
        out.append(SparseAUC(num_classes))
    return out
