"""A look inside each trial's training: gradients, weights, activations per block, and a diagnosis.

Why: a trial that ends at chance accuracy or NaN says nothing about why. At each epoch end this
callback takes one fixed probe batch of training samples through the model and measures what the
fundamentals say to watch: the gradient's global norm and its norm per block (exploding or
vanishing gradients), each block's weight norm and how much the epoch changed it (update-to-weight
ratio: ~1e-3 is healthy, ~1 is chaos, ~1e-6 is standing still), the activations' mean and spread and
the share of dead (never positive) or saturated units, and the learning rate. `diagnose` turns the
curves into one verdict (`automl.diagnosis`): diverged, exploding or vanishing gradients, dead
units, overfitting from epoch k, underfitting, or healthy.

Cost: a forward and backward pass of PROBE_SIZE samples (~15 ms for a small CNN on this CPU) per
measured epoch (a recurrent net's probe is traced once per model: eagerly it cost seconds), kept
within BUDGET of the training time: the first epoch is always measured, a later one only while the
measurements so far stay within the budget, so short epochs are sampled (every few epochs) and long
ones all measured. bench/overhead.py measures it; `diagnostics=False` switches
it off.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras
import numpy as np

PROBE_SIZE = 32
BUDGET = 0.03  # the share of training time the measurements may take
EXPLODING_NORM = 1e3
VANISHING_RATIO = 1e-4  # first block's gradient norm over the last block's
DEAD_SHARE = 0.8  # a block with more units never active on the probe batch: "dead units" (ReLU nets idle ~half)
DIVERGED_LOSS = 1e3  # cross-entropy starts near ln(classes), standardised regression near 1: far beyond is a blow-up
OVERFIT_RISE = 0.05  # validation loss this much above its minimum (2+ epochs later) while training loss falls


def blocks(model) -> list:
    """The model's top-level layers that hold weights: what per-block figures are given for."""
    return [layer for layer in model.layers if layer.trainable_weights]


class Diagnostics(keras.callbacks.Callback):
    """Per-epoch figures on a fixed probe batch of (x, y); `records` holds them, `log(epoch, figures)`
    (optional) receives them (the trial's MLflow run, batched with the epoch metrics)."""

    def __init__(self, log=None, x=None, y=None):
        super().__init__()
        self.log = log
        self.records: list[dict[str, float]] = []
        self.seconds = 0.0  # the diagnostics' own time in the trial (probe, measurements, logging): its cost
        self._traced: Any = None  # the probe's passes (_passes), traced per model
        if x is not None:
            self.use_probe(x, y)

    def use_probe(self, x, y):
        """The probe batch: the first PROBE_SIZE samples of what the model is fitted on."""
        started = time.perf_counter()
        self.x: Any
        if isinstance(x, dict):  # one input per table column
            self.x = {k: _tensor(v[:PROBE_SIZE]) for k, v in x.items()}
        elif isinstance(x, (list, tuple)):  # several inputs (a feature cache's outputs)
            self.x = [_tensor(v[:PROBE_SIZE]) for v in x]
        else:
            self.x = _tensor(x[:PROBE_SIZE])
        self.y = np.asarray(y[:PROBE_SIZE])
        self.seconds += time.perf_counter() - started

    def on_train_begin(self, logs=None):
        started = time.perf_counter()
        self.clock, self.trained, self.spent, self.cost = started, 0.0, 0.0, 0.0
        self.loss_fn = keras.losses.get(self.model.loss)
        self.blocks = blocks(self.model)
        self.previous = {b.name: [np.array(w) for w in b.get_weights()] for b in self.blocks}
        self._traced = None  # the probe's passes, traced for this model at its first measurement
        try:
            outputs = [_output_in(self.model, b) for b in self.blocks]
            self.probe = keras.Model(self.model.inputs, outputs) if outputs else None
        except (AttributeError, ValueError, TypeError):  # a subclassed model has no graph to tap
            self.probe = None
        self.seconds += time.perf_counter() - started
        self.clock = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.trained += now - self.clock
        if self.records and self.spent + self.cost > BUDGET * self.trained:
            self.clock = now  # within budget again after a few more epochs: short epochs are sampled
            return
        figures = self.measure()
        self.records.append(figures)
        if self.log is not None:
            self.log(epoch, figures)
        self.cost = time.perf_counter() - now
        self.spent += self.cost
        self.seconds += self.cost
        self.clock = time.perf_counter()

    def _passes(self):
        """The probe batch's gradients and activations; for a recurrent net as one traced TensorFlow
        function: run eagerly, it steps through its time steps in Python (a 1460-step LSTM probe took
        24 s of a 32 s trial, three times its training); traced, a fraction of an epoch. Traced once
        per trial (the model is fixed); eager where tracing fails, and for other nets (tracing
        cost a small CNN's diagnostics 3.5 % of its training against 2.4 % eager, bench/RESULTS.md)."""
        import tensorflow as tf

        variables = [v for b in self.blocks for v in b.trainable_weights]
        x_model, x_probe = _as_called(self.model, self.x), None
        if self.probe is not None:
            x_probe = _as_called(self.probe, self.x)

        def passes():
            with tf.GradientTape() as tape:
                pred = self.model(x_model, training=False)
                loss = tf.reduce_mean(self.loss_fn(self.y, pred))
            grads = tape.gradient(loss, variables)
            norms = [tf.norm(g) if g is not None else tf.zeros(()) for g in grads]
            acts = self.probe(x_probe, training=False) if self.probe is not None else []
            return norms, acts if isinstance(acts, (list, tuple)) else [acts]

        if self._traced is None:  # tracing costs a small model more (~0.07 s) than its eager probe
            self._traced = tf.function(passes) if _has_recurrence(self.model) else passes
        try:
            return self._traced()
        except Exception:  # a layer that cannot be traced: measured eagerly
            self._traced = passes
            return passes()

    def measure(self) -> dict[str, float]:
        out: dict[str, float] = {}
        norm_tensors, acts = self._passes()
        norms = [float(n) for n in norm_tensors]
        out["grad_global_norm"] = math.sqrt(sum(n * n for n in norms))
        i = 0
        for b in self.blocks:
            k = len(b.trainable_weights)
            out[f"grad_norm/{b.name}"] = math.sqrt(sum(n * n for n in norms[i : i + k]))
            i += k
            weights = [np.array(w) for w in b.get_weights()]
            size = math.sqrt(sum(float((w.astype("float64") ** 2).sum()) for w in weights))
            moved = math.sqrt(
                sum(float(((w - p).astype("float64") ** 2).sum()) for w, p in zip(weights, self.previous[b.name]))
            )
            out[f"weight_norm/{b.name}"] = size
            out[f"update_ratio/{b.name}"] = moved / size if size else 0.0
            self.previous[b.name] = weights
        if self.probe is not None:
            for b, a in zip(self.blocks, acts):
                a = np.asarray(a, dtype="float32").reshape(len(a), -1)
                out[f"act_mean/{b.name}"] = float(a.mean())
                out[f"act_std/{b.name}"] = float(a.std())
                out[f"dead_units/{b.name}"] = float((a <= 0).all(axis=0).mean())
                out[f"saturated_units/{b.name}"] = (
                    float((np.abs(a) >= 0.99).all(axis=0).mean()) if (np.abs(a).max() <= 1.0) else 0.0
                )
        lr = self.model.optimizer.learning_rate
        out["lr"] = float(np.asarray(lr(self.model.optimizer.iterations) if callable(lr) else lr))
        return out


def _has_recurrence(model) -> bool:
    """Whether the model holds a recurrent layer: eagerly, it steps through time in Python."""
    return any(isinstance(layer, keras.layers.RNN) for layer in model._flatten_layers())


def _output_in(model, layer):
    """`layer`'s output in `model`'s graph: a layer shared with another model (a feature cache's
    sub-model shares the full model's) has one output per model, and `layer.output` refuses."""
    try:
        from keras.src.ops.function import make_node_key  # Keras' own key of a layer's call in a graph
    except ImportError:
        return layer.output
    nodes = getattr(model, "_nodes", None)
    for k, node in enumerate(layer._inbound_nodes):
        if nodes is None or make_node_key(layer, k) in nodes:
            return node.output_tensors[0]
    return layer.output


def _as_called(model, x):
    """`x` in the structure the model was built with: a list for `keras.Model([input], ...)` (Keras
    warns at every call otherwise)."""
    listed = isinstance(getattr(model, "_inputs_struct", None), list)
    return [x] if listed and not isinstance(x, (dict, list)) else x


def _tensor(x):
    """Strings as a TensorFlow string tensor (what text models take); arrays as they are."""
    x = np.asarray(x)
    if x.dtype == object or x.dtype.kind in "US":
        import tensorflow as tf

        return tf.constant(x.astype(str))
    return x


def diagnose(history: list[dict], records: list[dict], task: str = "classification") -> str:
    """One verdict from the epoch metrics (`history`) and the diagnostics' records, most serious first."""
    found = []
    losses = [h.get("loss", math.nan) for h in history]
    finite = bool(history) and all(math.isfinite(v) for h in history for v in h.values() if isinstance(v, float))
    norms = [r["grad_global_norm"] for r in records if "grad_global_norm" in r]
    blown = max(losses, default=0.0) > DIVERGED_LOSS or not all(math.isfinite(n) for n in norms)
    if not finite or blown or (len(losses) >= 3 and losses[-1] > 3 * min(losses)):
        found.append("diverged")
    if norms and (not all(math.isfinite(n) for n in norms) or max(norms) > EXPLODING_NORM):
        found.append("exploding gradients")
    if records:
        last = records[-1]
        per_block = [v for k, v in last.items() if k.startswith("grad_norm/")]
        if len(per_block) >= 2 and per_block[-1] > 0 and per_block[0] / per_block[-1] < VANISHING_RATIO:
            found.append("vanishing gradients")
        dead = {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("dead_units/")}
        worst = max(dead, key=dead.__getitem__) if dead else None
        if worst is not None and dead[worst] > DEAD_SHARE:
            found.append(f"dead units ({dead[worst]:.0%} in {worst})")
    if "diverged" not in found:
        fit = _fit(history, task)
        if fit:
            found.append(fit)
    return "; ".join(found) or "healthy"


def _fit(history: list[dict], task: str) -> str | None:
    """Overfitting from the epoch after the validation loss's minimum, when it then rose while the
    training loss kept falling; underfitting when the model does not fit even its training data."""
    val = [h.get("val_loss", math.nan) for h in history]
    train = [h.get("loss", math.nan) for h in history]
    if len(history) >= 3 and all(math.isfinite(v) for v in val):
        best = int(np.argmin(val))
        if best < len(val) - 2 and val[-1] > min(val) * (1 + OVERFIT_RISE) and train[-1] < train[best]:
            return f"overfitting from epoch {best + 2}"
    last = history[-1] if history else {}
    if task == "classification" and "accuracy" in last and "val_accuracy" in last:
        if last["accuracy"] < 0.9 and last["accuracy"] <= last["val_accuracy"] + 0.01:
            return "underfitting"
    elif task == "regression" and len(train) >= 3 and train[-1] > 0.9 * train[0]:
        return "underfitting"
    return None
