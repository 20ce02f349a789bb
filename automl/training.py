"""How a model is trained: the `training:` section of a space -> optimiser, loss, metrics."""
from __future__ import annotations

TRAINING_DEFAULTS = {
    "optimizer": "adam",      # adam | adamw | sgd | rmsprop
    "learning_rate": 1e-3,
    "batch_size": 32,
    "weight_decay": 0.0,      # decoupled weight decay, any optimiser
    "momentum": 0.9,          # sgd and rmsprop only
    "schedule": "constant",   # constant | cosine (decays to 0 over the trial's epochs)
    "clipnorm": None,
}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")


def training_settings(config: dict) -> dict:
    """Defaults overlaid with the sampled values."""
    settings = {**TRAINING_DEFAULTS, **config}
    if settings["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"training.optimizer must be one of {OPTIMIZERS}, not {settings['optimizer']!r}")
    if settings["schedule"] not in SCHEDULES:
        raise ValueError(f"training.schedule must be one of {SCHEDULES}, not {settings['schedule']!r}")
    return settings


def make_optimizer(settings: dict, total_steps: int):
    import keras

    lr = float(settings["learning_rate"])
    if settings["schedule"] == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, total_steps))
    common = {"learning_rate": lr, "clipnorm": settings["clipnorm"],
              "weight_decay": float(settings["weight_decay"]) or None}
    name = settings["optimizer"]
    if name == "adam":
        return keras.optimizers.Adam(**common)
    if name == "adamw":
        return keras.optimizers.AdamW(**{**common, "weight_decay": float(settings["weight_decay"])})
    if name == "sgd":
        return keras.optimizers.SGD(momentum=float(settings["momentum"]), **common)
    return keras.optimizers.RMSprop(momentum=float(settings["momentum"]), **common)


def loss_and_metrics(task: str) -> tuple[str, list[str]]:
    if task == "classification":
        return "sparse_categorical_crossentropy", ["accuracy"]
    return "mse", ["mae"]


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
