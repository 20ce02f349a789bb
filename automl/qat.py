"""Quantization-aware training (QAT) for Keras 3 models, ending in a plain model for int8 TFLite.

Why: post-training int8 rounds the weights to 255 levels per output channel and every activation to
256 levels of a range calibrated afterwards; a network never trained under that noise can lose
accuracy. QAT trains the last epochs with the rounding simulated in the forward pass, and gradients
passing straight through it (the straight-through estimator), so the weights settle where the
rounding costs little.

Keras 3 has no QAT API (tensorflow-model-optimization works only with tf_keras). `quantize_aware`
returns a training twin of the model whose layers are the model's *own* layers, each wrapped by
`FakeQuantized`: the layer's kernels are read through `keras.StatelessScope` as their int8-rounded
values (symmetric, per output channel: how TFLite stores int8 weights), and its float output is
rounded to 8 bits over a range followed by a moving average (how TFLite quantizes activations).
Training the twin trains the original model, which stays a plain Keras model: it is what is saved.
The int8 file is converted from the twin itself: TFLite reads its FakeQuant ops' ranges, so the file
computes what the twin was trained and validated as (recalibrating the plain model instead lost up to
0.9 points of what QAT had gained on a model with a few wide channels).
"""

from __future__ import annotations

import keras
from keras import ops

QUANTIZED_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")
UNQUANTIZED = (
    keras.layers.TextVectorization,
    keras.layers.StringLookup,
    keras.layers.IntegerLookup,
    keras.layers.Hashing,
)


def fake_quantize_weights(w, name: str = "kernel"):
    """`w` rounded to int8 as TFLite stores it (symmetric, scale per output channel; one scale for an
    embedding table), with the straight-through gradient."""
    axes = tuple(range(len(w.shape) - 1))
    if name == "depthwise_kernel":
        axes = axes[:2]  # TFLite's depthwise channels are in x multiplier
    elif name == "embeddings" or len(w.shape) < 2:
        axes = tuple(range(len(w.shape)))
    scale = ops.maximum(ops.max(ops.abs(w), axis=axes, keepdims=True), 1e-12) / 127.0
    rounded = ops.clip(ops.round(w / scale), -127.0, 127.0) * scale
    return w + ops.stop_gradient(rounded - w)


def quantized_kernels(layer) -> list:
    """The kernels a layer computes with that int8 conversion rounds (recurrent kernels excepted:
    recurrent layers stay float in our int8 files)."""
    if type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN", "Bidirectional"):
        return []
    return [v for v in layer.trainable_weights if v.path.rsplit("/", 1)[-1] in QUANTIZED_KERNELS]


class FakeQuantized(keras.layers.Layer):
    """Runs `layer` with int8-rounded kernels and (unless `quantize_output=False`) rounds its float
    output to 8 bits over a moving-average range. Holds `layer` itself: training trains it."""

    def __init__(self, layer, quantize_output: bool = True, momentum: float = 0.99, **kwargs):
        super().__init__(name=f"qat_{layer.name}", **kwargs)
        self.layer, self.quantize_output, self.momentum = layer, quantize_output, momentum

    def build(self, *args, **kwargs):
        zeros = keras.initializers.Zeros()
        self.range_min = self.add_weight(shape=(), initializer=zeros, trainable=False, name="range_min")
        self.range_max = self.add_weight(shape=(), initializer=zeros, trainable=False, name="range_max")
        self.seen = self.add_weight(shape=(), initializer=zeros, trainable=False, name="seen")

    def call(self, *args, training=None, **kwargs):
        kernels = quantized_kernels(self.layer)
        mapping = [(v, fake_quantize_weights(v.value, v.path.rsplit("/", 1)[-1])) for v in kernels]
        if self.layer._call_has_training_arg:
            kwargs["training"] = training
        with keras.StatelessScope(state_mapping=mapping) as scope:
            out = self.layer(*args, **kwargs)
        kernel_ids = {id(v) for v in kernels}
        for v in self.layer.variables:  # what the layer updated inside the scope (batch statistics)
            value = scope.get_current_value(v)
            if value is not None and id(v) not in kernel_ids:
                v.assign(value)
        if not self.quantize_output or not hasattr(out, "dtype") or "float" not in str(out.dtype):
            return out
        if training:
            self._track_range(out)
        low = ops.minimum(self.range_min, 0.0)
        high = ops.maximum(self.range_max, low + 1e-6)
        return keras.quantizers.fake_quant_with_min_max_vars(out, low, high, num_bits=8)

    def _track_range(self, out):
        low, high = ops.cast(ops.min(out), "float32"), ops.cast(ops.max(out), "float32")
        first = ops.equal(self.seen, 0.0)
        m = self.momentum
        self.range_min.assign(ops.where(first, low, m * self.range_min + (1 - m) * low))
        self.range_max.assign(ops.where(first, high, m * self.range_max + (1 - m) * high))
        self.seen.assign(1.0)

    def compute_output_spec(self, *args, **kwargs):
        kwargs.pop("training", None)
        return self.layer.compute_output_spec(*args, **kwargs)


# Ops whose int8 kernels keep their input's scale (pooling, reshaping, dropping, joining): a range of
# their own would contradict it and the converter refuses the file.
SAME_SCALE = ("Pooling", "Flatten", "Reshape", "Dropout", "Permute", "Padding", "Cropping", "Concatenate",
              "UpSampling", "RepeatVector")  # fmt: skip
FUSED = ("BatchNormalization", "Activation", "ReLU")  # folded into the op before them by the converter


def _own_scale(layer) -> bool:
    """Whether TFLite gives this layer's output a range of its own: not for same-scale ops, and not for
    an op whose only consumers are fused into it (conv + batch norm + ReLU is one int8 op)."""
    name = type(layer).__name__
    if any(part in name for part in SAME_SCALE):
        return False
    consumers = [node.operation for node in getattr(layer, "_outbound_nodes", [])]
    return not consumers or not all(type(c).__name__ in FUSED for c in consumers)


def quantize_aware(model: keras.Model) -> keras.Model:
    """The training twin of `model`: the same layers (the same weights), each `FakeQuantized`; the
    model's outputs stay float (TFLite's int8 output keeps its own fixed scale). Train the twin,
    then use, save and convert `model` itself."""
    outputs = {id(t._keras_history.operation) for t in keras.tree.flatten(model.outputs)}

    def wrap(layer):
        if isinstance(layer, UNQUANTIZED):  # strings and ids in, ids out: nothing to round (and the
            return layer  # export finds the vectorizer where it was)
        return FakeQuantized(layer, quantize_output=id(layer) not in outputs and _own_scale(layer))

    if not isinstance(model, keras.Sequential) and not hasattr(model, "_run_through_graph"):
        kind = type(model).__name__
        raise ValueError(f"quantization-aware training needs a functional or Sequential model, not {kind}")
    return keras.models.clone_model(model, clone_function=wrap)
