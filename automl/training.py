"""How a model is trained: the `training:` section of a space -> optimiser, loss, metrics, and the
fit loop every trial uses (early stopping on the objective that keeps the best epoch).
"""

from __future__ import annotations

import math

import keras

from .blocks.registry import PRIOR_LAYERS
from .metrics import extra_metrics
from .records import TrialSettings

TIEBREAK = "val_loss"  # between epochs (and trials) with equal objective values, the lower one wins

TRAINING_DEFAULTS = {
    "optimizer": "adam",  # adam | adamw | sgd (with momentum) | rmsprop
    "learning_rate": 1e-3,
    "batch_size": 32,
    "weight_decay": 0.0,  # decoupled weight decay, any optimiser
    "momentum": 0.9,  # sgd and rmsprop only
    "schedule": "constant",  # constant | cosine (decays to 0 over the trial's epochs) | warmup (linear, then cosine)
    "warmup_fraction": 0.1,  # schedule warmup: share of the steps spent rising linearly from 0
    "clipnorm": None,
    "label_smoothing": 0.0,  # classification: targets (1 - s) * one_hot + s / classes
    "fine_tune_learning_rate": None,  # the backbone's unfrozen layers (None: learning_rate like the rest)
    "class_weight": "none",  # none | balanced (classification: each class weighs n / (classes * its count))
}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup")
CLASS_WEIGHTS = ("none", "balanced")


def training_settings(config: dict) -> dict:
    """Defaults overlaid with the sampled values."""
    settings = {**TRAINING_DEFAULTS, **config}
    if settings["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"training.optimizer must be one of {OPTIMIZERS}, not {settings['optimizer']!r}")
    if settings["schedule"] not in SCHEDULES:
        raise ValueError(f"training.schedule must be one of {SCHEDULES}, not {settings['schedule']!r}")
    if not 0 <= float(settings["label_smoothing"]) < 1:
        raise ValueError(f"training.label_smoothing must be in [0, 1), not {settings['label_smoothing']!r}")
    if not 0 <= float(settings["warmup_fraction"]) < 1:
        raise ValueError(f"training.warmup_fraction must be in [0, 1), not {settings['warmup_fraction']!r}")
    ft = settings["fine_tune_learning_rate"]
    if ft is not None and not float(ft) > 0:
        raise ValueError(f"training.fine_tune_learning_rate must be positive, not {ft!r}")
    if settings["class_weight"] not in CLASS_WEIGHTS:
        raise ValueError(f"training.class_weight must be one of {CLASS_WEIGHTS}, not {settings['class_weight']!r}")
    return settings


def make_optimizer(settings: dict, total_steps: int, model=None):
    """The optimiser; given the model, a backbone's unfrozen variables step at fine_tune_learning_rate."""
    settings = training_settings(settings)
    lr = float(settings["learning_rate"])
    common = {
        "learning_rate": learning_rate_schedule(settings, total_steps),
        "clipnorm": settings["clipnorm"],
        "weight_decay": float(settings["weight_decay"]) or None,
    }
    name = settings["optimizer"]
    if name == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(**{**common, "weight_decay": float(settings["weight_decay"])})
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(momentum=float(settings["momentum"]), **common)
    else:
        optimizer = keras.optimizers.RMSprop(momentum=float(settings["momentum"]), **common)
    ft = settings["fine_tune_learning_rate"]
    if ft is not None and model is not None:
        from .blocks.backbone import fine_tuned_variables

        scale_learning_rate(optimizer, fine_tuned_variables(model), float(ft) / lr)
    return optimizer


def learning_rate_schedule(settings: dict, total_steps: int):
    """A float (constant) or a Keras schedule over the trial's `total_steps` optimiser steps."""

    lr, steps = float(settings["learning_rate"]), max(1, int(total_steps))
    if settings["schedule"] == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps)
    if settings["schedule"] == "warmup":
        # step s < warm runs at lr * (s + 1) / (warm + 1): linear from ~0, and no step at exactly 0
        warm = max(1, round(float(settings["warmup_fraction"]) * steps))
        return keras.optimizers.schedules.CosineDecay(
            lr / (warm + 1), decay_steps=max(1, steps - warm), warmup_target=lr, warmup_steps=warm
        )
    return lr


def scale_learning_rate(optimizer, variables: list, scale: float) -> None:
    """Make `optimizer` step `variables` at `scale` times its (scheduled) learning rate.

    Keras 3 has no per-variable learning rate. Overriding `update_step` on this one instance, not
    subclassing, keeps the optimizer a stock Keras class: a saved `.keras` file loads in any Keras
    without automl (it records the head's rate; the split matters only while training here).
    Decoupled weight decay stays at the head's rate.
    """
    if not variables or scale == 1.0:
        return
    keys = {optimizer._var_key(v) for v in variables}
    stock_step = optimizer.update_step

    def update_step(gradient, variable, learning_rate):
        if optimizer._var_key(variable) in keys:
            learning_rate = learning_rate * scale
        return stock_step(gradient, variable, learning_rate)

    optimizer.update_step = update_step


def loss_and_metrics(
    task: str, settings: dict | None = None, extra=(), num_classes: int | None = None, target_std: float = 1.0
) -> tuple:
    """Loss and metrics for the task; `settings` (the training section) may ask for label smoothing,
    `extra` names metrics of metrics.py an objective needs (`val_f1`...); `target_std` (the training
    target's standard deviation) puts a regression's loss in its units (standardized_mse)."""
    smoothing = float((settings or {}).get("label_smoothing") or 0.0)
    if task == "classification":
        loss = smoothed_sparse_crossentropy(smoothing) if smoothing else "sparse_categorical_crossentropy"
        return loss, ["accuracy", *extra_metrics(extra, num_classes)]
    if smoothing:
        raise ValueError(f"training.label_smoothing applies to classification, not {task}")
    return (standardized_mse(target_std) if target_std != 1.0 else "mse"), ["mae"]


def standardized_mse(target_std: float):
    """Mean squared error over the training target's variance: 1.0 is what predicting the training
    mean scores, whatever the target's units (`mae` stays in them).

    Why: the model outputs the target in its own units (the builder's `Rescaling` output), so a plain
    squared error, and its gradients, grow with the target's scale squared. Adam does not mind; SGD
    does: on house prices (standard deviation ~1e5) SGD's first steps overflowed to NaN (2-7 failed
    trials per california_housing search), and on a target of scale 1e-3 it would barely move.
    A stock MeanSquaredError whose function is scaled, so the compile config stays plain and a
    saved model loads anywhere.
    """
    scale = 1.0 / float(target_std) ** 2
    loss = keras.losses.MeanSquaredError()
    loss.fn = lambda y_true, y_pred, **_: keras.losses.mean_squared_error(y_true, y_pred) * scale
    return loss


def smoothed_sparse_crossentropy(smoothing: float):
    """Cross-entropy of integer labels against smoothed targets (1 - s) * one_hot + s / classes.

    Keras' SparseCategoricalCrossentropy has no label_smoothing. This is a stock instance of it
    whose loss function one-hot encodes the labels and applies the categorical loss's smoothing;
    the compile config stays a plain sparse cross-entropy, so a saved model loads anywhere.
    """
    from keras import ops

    def smoothed(y_true, y_pred, **_):
        classes = ops.shape(y_pred)[-1]
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=smoothing)

    loss = keras.losses.SparseCategoricalCrossentropy()
    loss.fn = smoothed
    return loss


def class_weights(task: str, y, setting: str = "none") -> dict[int, float] | None:
    """`balanced`: class k weighs n / (classes * count_k) in the training loss, so a rare class counts
    as much as a common one (imbalanced tables: fraud, churn, bank_marketing's 12% yes). Regression
    has no classes and ignores it, so one table space serves both tasks."""
    if setting == "none" or task != "classification":
        return None
    import numpy as np

    classes, counts = np.unique(np.asarray(y), return_counts=True)
    return {int(k): len(y) / (len(classes) * int(c)) for k, c in zip(classes, counts)}


# ---------------------------------------------------------------- the fit loop


class BestEpochStopping(keras.callbacks.Callback):
    """Early stopping on the objective, restoring the best epoch's weights at the end; an epoch with
    an equal objective and a lower `val_loss` also counts as progress (and becomes the best epoch).

    Why: on small validation sets accuracy moves in coarse steps. It sits on the majority class for
    the first epochs or ties between epochs while the loss still shows learning; plain early
    stopping then stops a model that is improving, or restores the first of several tied epochs.

    `start`: the validation logs of the weights training starts from (a budget schedule's
    continuation of saved weights); an epoch must beat them, else those weights are restored, so
    training on never leaves a model worse on validation than it began.
    """

    def __init__(
        self,
        monitor: str,
        direction: str = "maximize",
        patience: int = 3,
        tiebreak: str = TIEBREAK,
        start: dict | None = None,
    ):
        super().__init__()
        self.monitor, self.patience, self.tiebreak, self.start = monitor, patience, tiebreak, start
        self.sign = 1.0 if direction == "maximize" else -1.0
        self.best: tuple | None = None  # epoch_key of the best epoch (or of the start) so far
        self.best_weights: list | None = None
        self.wait = 0

    def on_train_begin(self, logs=None):
        self.best, self.best_weights, self.wait = None, None, 0
        start = epoch_key(self.start, self.monitor, self.sign, self.tiebreak) if self.start else None
        if start is not None:
            self.best, self.best_weights = start, self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        key = epoch_key(logs or {}, self.monitor, self.sign, self.tiebreak)
        if key is None:
            return
        if self.best is None or key > self.best:
            self.best, self.wait = key, 0
            self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def epoch_key(logs: dict, monitor: str, sign: float, tiebreak: str | None = TIEBREAK) -> tuple | None:
    """How good an epoch is (larger is better): the objective, then a lower `tiebreak` loss; None
    when the objective is missing or not finite."""
    value = logs.get(monitor)
    if value is None or not math.isfinite(value):
        return None
    loss = logs.get(tiebreak, math.inf) if tiebreak and tiebreak != monitor else math.inf
    return (sign * value, -loss if math.isfinite(loss) else -math.inf)


def best_epoch(history: list[dict], monitor: str, direction: str) -> int:
    """Index of the epoch BestEpochStopping restores (the first of fully equal epochs)."""
    sign = 1.0 if direction == "maximize" else -1.0
    keys = [epoch_key(logs, monitor, sign) for logs in history]
    ranked = [i for i, k in enumerate(keys) if k is not None]
    return max(ranked, key=lambda i: (keys[i], -i)) if ranked else len(history) - 1


def early_stopping(settings: TrialSettings, start: dict | None = None) -> list:
    """The trial's early-stopping callback (none when patience is off); also used for hypermodels.
    `start`: validation logs an epoch must beat (BestEpochStopping)."""
    if not settings.patience:
        return []
    return [BestEpochStopping(settings.objective, settings.direction, settings.patience, start=start)]


def start_kept(start: dict | None, at_best: dict, monitor: str, direction: str) -> bool:
    """Whether no epoch beat the validation logs training started from (BestEpochStopping then
    restored the starting weights)."""
    sign = 1.0 if direction == "maximize" else -1.0
    first = epoch_key(start, monitor, sign) if start else None
    best = epoch_key(at_best, monitor, sign)
    return first is not None and (best is None or first >= best)


def objective_names(settings: TrialSettings) -> list[str]:
    """Every metric the search judges by: the objective, the other objectives and the constraints."""
    objectives = settings.objectives
    more = [*objectives.names, *objectives.constraints] if objectives is not None else []
    return [settings.objective, *more]


def starts_fitted(model) -> bool:
    """Whether the model's output starts as scores fitted before training (boosted trees, a fitted
    linear model) plus a zero-initialised head: training then keeps those scores unless an epoch
    beats them on validation, as a continuation keeps its loaded weights (measured: a head trained
    on top of a text task's fitted logistic regression only raised its validation loss)."""
    names = {layer.name for layer in getattr(model, "layers", [])}
    return any(name in names for name in PRIOR_LAYERS)


def fit_model(model, data, training: dict, settings: TrialSettings, callbacks: list, features=None):
    """Compile and fit; shared by trials and by the bare-Keras baseline in bench/overhead.py. With a
    `FeatureCache`, the layers after the model's fixed preprocessing train on its cached outputs
    (the same weights: `model` is trained, compiled as usual and computes what was trained)."""
    steps = settings.epochs * math.ceil(len(data.y_train) / int(training["batch_size"]))
    classes = data.num_classes if data.task == "classification" else None
    loss, metrics = loss_and_metrics(data.task, training, objective_names(settings), classes, data.target_std)
    optimizer = make_optimizer(training, steps, model)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    trainable, x_train, x_val = (features.split(model) if features is not None else None) or (
        model,
        data.x_train,
        data.x_val,
    )
    if trainable is not model:
        trainable.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    for callback in callbacks:  # the diagnostics probe what is fitted (a feature cache's outputs)
        if hasattr(callback, "use_probe"):
            callback.use_probe(x_train, data.y_train)
    start = None
    if (settings.from_saved_weights or starts_fitted(model)) and settings.patience:  # must beat where it starts
        batch = int(training["batch_size"])
        scores = trainable.evaluate(x_val, data.y_val, batch_size=batch, verbose=0, return_dict=True)
        start = {f"val_{k}": float(v) for k, v in scores.items()}
        for callback in callbacks:
            if hasattr(callback, "start_logs"):
                callback.start_logs = start
    return trainable.fit(
        x_train,
        data.y_train,
        validation_data=(x_val, data.y_val),
        epochs=settings.epochs,
        batch_size=int(training["batch_size"]),
        class_weight=class_weights(data.task, data.y_train, training.get("class_weight", "none")),
        callbacks=[*callbacks, *early_stopping(settings, start)],
        verbose=settings.verbose,
    )
