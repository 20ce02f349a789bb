"""Magnitude pruning for Keras 3 models (Zhu & Gupta 2017), without wrapper layers.

Why this way: Keras 3 has no pruning API and tensorflow-model-optimization works only with
tf_keras. Instead of wrapping layers, each prunable weight gets a mask, applied as the weight's
*constraint*: Keras 3 optimizers apply a variable's constraint right after every update, inside the
compiled train step, so pruned weights are exactly zero after each step at no Python cost. A
callback raises the sparsity along the polynomial schedule and recomputes the masks from the
weights' magnitudes. `strip` removes the constraints: the model is then a plain Keras model (its
layer configs never changed), its zeros survive `.keras` saving and TFLite conversion, and gzip
shrinks the files.

Prunable: the kernels of Dense, Conv1D/2D/3D, DepthwiseConv2D and SeparableConv (depthwise and
pointwise), Embedding tables, and LSTM/GRU kernels and recurrent kernels. Biases, normalisation
and the output layer's kernel are left dense (they are few and sensitive). `structured=True`
prunes whole output channels (filters/units) by their L2 norm instead of single weights.
"""

from __future__ import annotations

import math

import keras
import numpy as np

PRUNABLE_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings")
PRUNABLE_LAYERS = (
    "Dense",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "SeparableConv1D",
    "SeparableConv2D",
    "Embedding",
    "LSTM",
    "GRU",
)


def _layers(model) -> list:
    """Every layer, nested models' layers in place of the models (public `layers` only)."""
    out = []
    for layer in model.layers:
        out += _layers(layer) if hasattr(layer, "layers") else [layer]
    return out


def prunable_variables(model: keras.Model, skip_output: bool = True) -> list:
    """The weights pruning applies to, in layer order (nested models and RNN cells included)."""
    layers = [layer for layer in _layers(model) if type(layer).__name__ in PRUNABLE_LAYERS]
    if skip_output and layers and type(layers[-1]).__name__ == "Dense":
        layers = layers[:-1]  # the output layer: few weights, every one matters
    found, seen = [], set()
    for layer in layers:
        for v in layer.trainable_weights:
            name = v.path.rsplit("/", 1)[-1]
            if name in PRUNABLE_NAMES and id(v) not in seen:
                seen.add(id(v))
                found.append(v)
    return found


def polynomial_sparsity(step: int, begin: int, end: int, final: float, initial: float = 0.0, power: int = 3) -> float:
    """Zhu & Gupta's schedule: sparsity rises from `initial` at `begin` to `final` at `end`, fast
    first (when many weights are redundant), then slowly (time to recover)."""
    if step <= begin:
        return initial if step == begin else 0.0
    if step >= end:
        return final
    done = (step - begin) / max(1, end - begin)
    return final + (initial - final) * (1.0 - done) ** power


def magnitude_mask(weights: np.ndarray, sparsity: float, structured: bool = False) -> np.ndarray:
    """1 where a weight stays, 0 where it is pruned: the `sparsity` share with the smallest magnitude
    (structured: whole output channels, the last axis, by L2 norm)."""
    if sparsity <= 0:
        return np.ones_like(weights, dtype="float32")
    if structured:
        norms = np.sqrt((weights.reshape(-1, weights.shape[-1]) ** 2).sum(axis=0))
        k = min(len(norms) - 1, math.floor(sparsity * len(norms)))  # keep at least one channel
        keep = np.ones(len(norms), dtype="float32")
        keep[np.argsort(norms, kind="stable")[:k]] = 0.0
        return np.broadcast_to(keep, weights.shape).astype("float32")
    flat = np.abs(weights).ravel()
    k = round(sparsity * flat.size)
    mask = np.ones(flat.size, dtype="float32")
    mask[np.argsort(flat, kind="stable")[:k]] = 0.0
    return mask.reshape(weights.shape)


class _Mask:
    """A variable's constraint: multiply by the mask after every optimizer update."""

    def __init__(self, variable):
        self.mask = keras.Variable(np.ones(variable.shape, dtype="float32"), trainable=False, name="prune_mask")

    def __call__(self, w):
        return w * keras.ops.cast(self.mask, w.dtype)


class MagnitudePruning(keras.callbacks.Callback):
    """Prune `model`'s prunable weights to `sparsity` along the polynomial schedule.

    `begin`/`end` are fractions of the training steps (`fit`'s epochs x steps) between which the
    sparsity rises; masks are recomputed every `frequency` steps (and at `end`). Use the callback in
    `fit(callbacks=[...])`, then `strip(model)`.
    """

    def __init__(
        self,
        sparsity: float,
        begin: float = 0.0,
        end: float = 0.7,
        frequency: int = 50,
        structured: bool = False,
        power: int = 3,
    ):
        super().__init__()
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), not {sparsity}")
        if not 0.0 <= begin < end <= 1.0:
            raise ValueError(f"need 0 <= begin < end <= 1, not begin={begin} end={end}")
        self.target, self.begin, self.end = sparsity, begin, end
        self.frequency, self.structured, self.power = max(1, frequency), structured, power
        self.step = 0
        self.variables: list = []

    def on_train_begin(self, logs=None):
        self.variables = prunable_variables(self.model)
        for v in self.variables:
            if not isinstance(v.constraint, _Mask):
                v.constraint = _Mask(v)
        self.model.make_train_function(force=True)  # a step traced before had no masks in it
        total = max(1, int(self.params.get("epochs", 1)) * int(self.params.get("steps") or 1))
        self.begin_step, self.end_step = int(self.begin * total), max(1, int(self.end * total))
        self._update(force=self.step >= self.end_step)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step >= self.begin_step and (self.step % self.frequency == 0 or self.step == self.end_step):
            self._update()

    def current_sparsity(self) -> float:
        return polynomial_sparsity(self.step, self.begin_step, self.end_step, self.target, power=self.power)

    def _update(self, force: bool = False):
        target = self.target if force else self.current_sparsity()
        for v in self.variables:
            mask = magnitude_mask(keras.ops.convert_to_numpy(v), target, self.structured)
            v.constraint.mask.assign(mask)
            v.assign(keras.ops.convert_to_numpy(v) * mask)


def hold_zeros(model: keras.Model) -> None:
    """Keep the prunable weights that are zero at zero from now on (a pruned model fine-tuned again,
    e.g. by quantization-aware training); `strip` ends it. Weights already masked keep their masks."""
    for v in prunable_variables(model):
        if not isinstance(v.constraint, _Mask):
            mask = _Mask(v)
            mask.mask.assign((keras.ops.convert_to_numpy(v) != 0).astype("float32"))
            v.constraint = mask


def strip(model: keras.Model) -> keras.Model:
    """Remove the pruning masks (the variables' constraints): a plain model whose zeros stay."""
    for v in prunable_variables(model, skip_output=False):
        if isinstance(v.constraint, _Mask):
            v.assign(keras.ops.convert_to_numpy(v) * keras.ops.convert_to_numpy(v.constraint.mask))
            v.constraint = None
    return model


def sparsity(model: keras.Model) -> float:
    """The share of exact zeros among the prunable weights (the output layer's excepted)."""
    arrays = [keras.ops.convert_to_numpy(v) for v in prunable_variables(model)]
    total = sum(a.size for a in arrays)
    return float(sum((a == 0).sum() for a in arrays) / total) if total else 0.0


# ---------------------------------------------------------------- structured pruning made real

CHAIN = ("Activation", "Dropout")  # per-unit or identity at inference: a removed unit stays removable


def shrink(model: keras.Model) -> keras.Model:
    """Remove the hidden units that structured pruning zeroed from Dense layers, so the file and its
    LiteRT latency shrink too (zeros alone only shrink the gzip'd file).

    A unit whose kernel column is all zero outputs a constant (its activated bias); the Dense layer
    that consumes it (through Activation/Dropout layers only) gets that constant folded into its bias,
    so the smaller model computes the same function. Other layers are shared, not copied. Models
    without such a Dense pair are returned as they are."""
    while True:
        pair = _removable_pair(model)
        if pair is None:
            return model
        model = _without_units(model, *pair)


def _removable_pair(model):
    outputs = {id(t._keras_history.operation) for t in keras.tree.flatten(model.outputs)}
    for layer in model.layers:
        if type(layer).__name__ != "Dense" or id(layer) in outputs or not layer.use_bias:
            continue
        chain, node = [], layer
        while True:
            mine = {id(op): op for op in model.layers}  # a shared layer also feeds models made before this one
            consumers = list({id(n.operation): n.operation for n in getattr(node, "_outbound_nodes", [])
                              if id(n.operation) in mine}.values())  # fmt: skip
            if len(consumers) != 1:
                break
            node = consumers[0]
            if type(node).__name__ in CHAIN:
                chain.append(node)
                continue
            break
        if type(node).__name__ != "Dense" or node is layer or not node.use_bias:
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        keep = np.any(kernel != 0, axis=0)
        if 0 < keep.sum() < keep.size:
            return layer, chain, node, keep
    return None


def _without_units(model, layer, chain, consumer, keep):
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.kernel, layer.bias))
    constant = keras.ops.convert_to_numpy(
        _through(chain, keras.ops.convert_to_tensor(layer.activation(bias[~keep][None, :])))
    )[0]
    c_kernel, c_bias = (keras.ops.convert_to_numpy(w) for w in (consumer.kernel, consumer.bias))
    smaller = keras.layers.Dense.from_config({**layer.get_config(), "units": int(keep.sum())})
    after = keras.layers.Dense.from_config(consumer.get_config())

    def clone(op):
        return smaller if op is layer else after if op is consumer else op  # the rest: shared, not copied

    new = keras.models.clone_model(model, clone_function=clone)
    smaller.set_weights([kernel[:, keep], bias[keep]])
    after.set_weights([c_kernel[keep], c_bias + constant @ c_kernel[~keep]])
    return new


def _through(chain, x):
    for op in chain:
        x = op(x, training=False) if type(op).__name__ == "Dropout" else op(x)
    return x
