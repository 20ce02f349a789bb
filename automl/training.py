"""How a model is trained: the `training:` section of a space -> optimiser, loss, metrics.

No TensorFlow import at module level (the builder's space check reads TRAINING_DEFAULTS).
"""
from __future__ import annotations

TRAINING_DEFAULTS = {
    "optimizer": "adam",      # adam | adamw | sgd (with momentum) | rmsprop
    "learning_rate": 1e-3,
    "batch_size": 32,
    "weight_decay": 0.0,      # decoupled weight decay, any optimiser
    "momentum": 0.9,          # sgd and rmsprop only
    "schedule": "constant",   # constant | cosine (decays to 0 over the trial's epochs) | warmup (linear, then cosine)
    "warmup_fraction": 0.1,   # schedule warmup: share of the steps spent rising linearly from 0
    "clipnorm": None,
    "label_smoothing": 0.0,   # classification: targets (1 - s) * one_hot + s / classes
    "fine_tune_learning_rate": None,  # the backbone's unfrozen layers (None: learning_rate like the rest)
}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup")


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
    return settings


def make_optimizer(settings: dict, total_steps: int, model=None):
    """The optimiser; given the model, a backbone's unfrozen variables step at fine_tune_learning_rate."""
    import keras

    settings = training_settings(settings)
    lr = float(settings["learning_rate"])
    common = {"learning_rate": learning_rate_schedule(settings, total_steps), "clipnorm": settings["clipnorm"],
              "weight_decay": float(settings["weight_decay"]) or None}
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
    import keras

    lr, steps = float(settings["learning_rate"]), max(1, int(total_steps))
    if settings["schedule"] == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps)
    if settings["schedule"] == "warmup":
        # step s < warm runs at lr * (s + 1) / (warm + 1): linear from ~0, and no step at exactly 0
        warm = max(1, round(float(settings["warmup_fraction"]) * steps))
        return keras.optimizers.schedules.CosineDecay(lr / (warm + 1), decay_steps=max(1, steps - warm),
                                                      warmup_target=lr, warmup_steps=warm)
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


def loss_and_metrics(task: str, settings: dict | None = None) -> tuple:
    """Loss and metrics for the task; `settings` (the training section) may ask for label smoothing."""
    smoothing = float((settings or {}).get("label_smoothing") or 0.0)
    if task == "classification":
        loss = smoothed_sparse_crossentropy(smoothing) if smoothing else "sparse_categorical_crossentropy"
        return loss, ["accuracy"]
    if smoothing:
        raise ValueError(f"training.label_smoothing applies to classification, not {task}")
    return "mse", ["mae"]


def smoothed_sparse_crossentropy(smoothing: float):
    """Cross-entropy of integer labels against smoothed targets (1 - s) * one_hot + s / classes.

    Keras' SparseCategoricalCrossentropy has no label_smoothing. This is a stock instance of it
    whose loss function one-hot encodes the labels and applies the categorical loss's smoothing;
    the compile config stays a plain sparse cross-entropy, so a saved model loads anywhere.
    """
    import keras
    from keras import ops

    def smoothed(y_true, y_pred, **_):
        classes = ops.shape(y_pred)[-1]
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=smoothing)

    loss = keras.losses.SparseCategoricalCrossentropy()
    loss.fn = smoothed
    return loss


def metric_names(task: str) -> list[str]:
    """Names Keras logs per epoch for this task: the objective must be one of them."""
    _, metrics = loss_and_metrics(task)
    names = ["loss", *metrics]
    return names + [f"val_{n}" for n in names]


def default_objective(task: str) -> tuple[str, str]:
    return ("val_accuracy", "maximize") if task == "classification" else ("val_loss", "minimize")


def infer_direction(objective: str) -> str:
    name = objective.removeprefix("val_")
    return "maximize" if name in ("accuracy", "auc", "precision", "recall", "f1_score") else "minimize"
