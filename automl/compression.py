"""Compression of a trained model for phones: magnitude pruning, then quantization-aware training.

Both are short fine-tunings of a model that has already learned (the order TensorFlow Model
Optimization recommends: prune, then QAT with the zeros kept), so a trial keeps its early stopping
and best epoch as before and the compression cannot restore a less sparse epoch. The same function
serves a trial whose configuration has a `compression:` section and `automl export --prune/--qat`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .pruning import MagnitudePruning, hold_zeros, shrink, sparsity, strip
from .qat import quantize_aware
from .space import compression_settings
from .training import class_weights, fit_model, loss_and_metrics, make_optimizer, objective_names

if TYPE_CHECKING:
    from .data import Dataset
    from .records import TrialSettings


@dataclass
class Compressed:
    """What `compress` did: the model's measured sparsity, validation metrics of the compressed model
    (with QAT: of its int8 simulation), and the fine-tuning epochs' logs, step by step."""

    sparsity: float = 0.0
    qat: bool = False
    val: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    twin: Any = None  # with QAT: the training twin, whose int8 conversion uses the ranges it learned
    model: Any = None  # the compressed model: the one given, or (structured) a smaller one computing the same

    @property
    def done(self) -> bool:
        return bool(self.history)

    def describe(self) -> str:
        """E.g. "pruned 0.80 + qat": the trial's `automl.compression` tag."""
        parts = ([f"pruned {self.sparsity:.2f}"] if self.sparsity else []) + (["qat"] if self.qat else [])
        return " + ".join(parts) or "none"


def wanted(compression: dict | None) -> bool:
    c = compression_settings(compression)
    return bool(c["sparsity"]) or bool(c["qat"])


def compress(
    model, data: Dataset, compression: dict | None, training: dict, settings: TrialSettings, callbacks=()
) -> Compressed:
    """Fine-tune `model` in place: prune to `sparsity` (masks stripped at the end: a plain Keras model
    whose zeros stay; structured: the zeroed Dense units removed, `Compressed.model` is then a new,
    smaller model), then QAT. Returns `Compressed` (nothing done when the section asks for neither)."""
    c = compression_settings(compression)
    out = Compressed()
    if not wanted(c):
        return out
    # Pruning needs the training rate to recover (4 epochs at it recovered 80 % sparsity on digits where
    # 1/10 of it did not); QAT only nudges weights already trained, at 1/10 (TF Model Optimization's advice).
    lr = float(c["learning_rate"] or training.get("learning_rate") or 1e-3)
    tune = {**training, "learning_rate": lr, "schedule": "cosine", "warmup_fraction": 0.0}
    step = replace(settings, epochs=int(c["epochs"]), patience=None)  # no best-epoch restore: a later epoch is sparser
    if c["sparsity"]:
        pruning = MagnitudePruning(
            float(c["sparsity"]),
            end=0.7 if c["schedule"] == "polynomial" else 1e-6,
            frequency=max(1, _steps(data, tune) // 10),
            structured=bool(c["structured"]),
        )
        history = fit_model(model, data, tune, step, [pruning, *callbacks])
        out.history += _logs(history, "prune")
        out.sparsity = sparsity(model)
        if c["structured"]:  # the zeroed units leave the Dense layers: a smaller file and faster calls
            model = shrink(strip(model))
    if c["qat"]:
        if sparsity(model) > 0:
            hold_zeros(model)  # pruned zeros (of this call or an earlier one) stay zero
        twin = quantize_aware(model)
        total = int(c["epochs"]) * _steps(data, tune)
        if not c["learning_rate"]:
            tune = {**tune, "learning_rate": lr / 10}
        classes = data.num_classes if data.task == "classification" else None
        loss, metrics = loss_and_metrics(data.task, tune, objective_names(settings), classes, data.target_std)
        twin.compile(optimizer=make_optimizer(tune, total), loss=loss, metrics=metrics)
        history = twin.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            epochs=int(c["epochs"]),
            batch_size=int(tune["batch_size"]),
            class_weight=class_weights(data.task, data.y_train, tune.get("class_weight", "none")),
            callbacks=list(callbacks),
            verbose=settings.verbose,
        )
        out.history += _logs(history, "qat")
        out.qat, out.twin = True, twin
    out.model = strip(model)  # the pruning masks (QAT's twin shares the model's layers and stays usable)
    last = out.history[-1]
    out.val = {k: v for k, v in last.items() if k.startswith("val_")}
    return out


def _steps(data: Dataset, training: dict) -> int:
    return max(1, -(-len(data.y_train) // int(training["batch_size"])))


def _logs(history, phase: str) -> list[dict[str, Any]]:
    keys = list(history.history)
    epochs = len(history.history[keys[0]]) if keys else 0
    return [{"phase": phase, **{k: float(history.history[k][i]) for k in keys}} for i in range(epochs)]
