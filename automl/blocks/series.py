"""Time-series blocks: per-series normalisation and random convolution features (ROCKET).

Both honour the padding mask of variable-length sequences (the builder masks all-zero steps):
padding takes no part in any statistic.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from .registry import register

MODES = ("dataset", "series")
EPSILON = 1e-6  # a constant series (std 0) becomes all zeros instead of dividing by 0


def _steps_mask(x, mask):
    """(batch, steps, 1) float: 1 on real steps (all steps without a mask)."""
    if mask is None:
        return ops.ones_like(x[:, :, :1])
    return ops.expand_dims(ops.cast(mask, x.dtype), -1)


@keras.saving.register_keras_serializable(package="automl")
class SeriesNormalization(layers.Layer):
    """z-normalises each series, each feature, over its own real steps; padding steps become 0 and
    the mask passes on."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x, mask=None):
        real = _steps_mask(x, mask)
        count = ops.maximum(ops.sum(real, axis=1, keepdims=True), 1.0)
        mean = ops.sum(x * real, axis=1, keepdims=True) / count
        centred = (x - mean) * real
        std = ops.sqrt(ops.sum(centred * centred, axis=1, keepdims=True) / count)
        return centred / ops.maximum(std, EPSILON)


@register("series_norm")
def series_norm(x, mode: str = "dataset"):
    """How sequences are scaled: `dataset` keeps the builder's per-feature standardisation over the
    whole training split; `series` z-normalises each series on its own (amplitude and offset then
    carry no information: what counts is the shape, as in most UCR benchmarks' preprocessing)."""
    if len(x.shape) != 3:
        raise ValueError(f"series_norm needs a sequence (batch, steps, features), got shape {tuple(x.shape)}")
    if mode not in MODES:
        raise ValueError(f"series_norm mode must be one of {MODES}, not {mode!r}")
    return SeriesNormalization()(x) if mode == "series" else x


@keras.saving.register_keras_serializable(package="automl")
class RandomConvolutions(layers.Layer):
    """`num_kernels` fixed random convolutions (ROCKET, Dempster et al. 2020) -> per kernel the max
    and the proportion of positive values (PPV) over the real steps: 2 * num_kernels features.

    Kernels of length `kernel_size` span every feature, with mean-centred N(0, 1) weights, a
    U(-1, 1) bias and a dilation drawn from `groups` values spaced exponentially up to the series
    length; kernels of one dilation form one convolution. All drawn from `seed` and stored as
    non-trainable weights (saved with the model). Padding steps are zeroed before convolving.
    """

    def __init__(self, num_kernels: int = 1000, kernel_size: int = 9, seed: int = 0, groups: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.num_kernels, self.kernel_size, self.seed, self.groups = (
            int(num_kernels),
            int(kernel_size),
            int(seed),
            int(groups),
        )
        self.supports_masking = True

    def build(self, input_shape):
        steps, features = input_shape[1], input_shape[2]
        if steps is None:
            raise ValueError("random convolutions need a fixed sequence length")
        rng = np.random.default_rng(self.seed)
        top = math.log2(max(1.0, (steps - 1) / (self.kernel_size - 1)))
        candidates = np.unique(np.floor(2.0 ** np.linspace(0.0, top, self.groups)).astype(int))
        chosen = rng.choice(candidates, size=self.num_kernels)
        weights = rng.normal(size=(self.num_kernels, self.kernel_size, features))
        weights -= weights.mean(axis=(1, 2), keepdims=True)
        biases = rng.uniform(-1.0, 1.0, size=self.num_kernels)
        self.dilations, self.kernels, self.biases = [], [], []
        for d in candidates:
            picked = chosen == d
            if not picked.any():
                continue
            kernel = np.transpose(weights[picked], (1, 2, 0))  # (kernel_size, features, kernels)
            self.dilations.append(int(d))
            self.kernels.append(self._fixed(f"kernel_d{d}", kernel))
            self.biases.append(self._fixed(f"bias_d{d}", biases[picked]))

    def _fixed(self, name, value):
        return self.add_weight(
            shape=value.shape, initializer=keras.initializers.Constant(value), trainable=False, name=name
        )

    def call(self, x, mask=None):
        real = _steps_mask(x, mask)
        x = x * real
        count = ops.maximum(ops.sum(real, axis=1), 1.0)
        maxima, ppv = [], []
        for d, kernel, bias in zip(self.dilations, self.kernels, self.biases):
            y = ops.conv(x, kernel, strides=1, padding="same", dilation_rate=d) + bias
            maxima.append(ops.max(y * real + (real - 1.0) * 1e9, axis=1))  # padding -> -1e9, never the max
            ppv.append(ops.sum(ops.cast(ops.greater(y, 0.0), x.dtype) * real, axis=1) / count)
        return ops.concatenate(maxima + ppv, axis=1)

    def compute_mask(self, x, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.num_kernels)

    def get_config(self):
        return {
            **super().get_config(),
            "num_kernels": self.num_kernels,
            "kernel_size": self.kernel_size,
            "seed": self.seed,
            "groups": self.groups,
        }


@register("rocket")
def rocket(x, data, num_kernels: int = 1000, seed: int = 0, dropout: float = 0.0):
    """ROCKET features (see `RandomConvolutions`) standardised with their training-split mean and
    variance, as ROCKET's linear classifier expects: only the layers after the fixed kernels train,
    so a model fits in seconds and is strong on small time-series sets (Dempster et al. 2020).
    The output is one vector per series.

    Why not batch norm: its moving statistics are still far from the data's after the few dozen
    steps a small set trains for (on GunPoint the head then stayed at chance).
    """
    if len(x.shape) != 3:
        raise ValueError(f"rocket needs a sequence (batch, steps, features), got shape {tuple(x.shape)}")
    if num_kernels < 1:
        raise ValueError(f"rocket num_kernels must be at least 1, not {num_kernels}")
    if data is None:
        raise ValueError("the rocket block learns its features' scale from the training split: it needs the data")
    features = RandomConvolutions(num_kernels, seed=seed)(x)
    before = keras.Model(_inputs_of(features), features)
    if before.trainable_weights:
        raise ValueError("rocket needs fixed input features (a sequence input, not a trained embedding or layer)")
    train = np.asarray(before.predict(data.x_train, batch_size=256, verbose=0), dtype="float64")
    variance = train.var(axis=0)
    variance[variance < 1e-12] = 1.0  # a feature constant on the training split stays centred, not blown up
    x = layers.Normalization(mean=train.mean(axis=0), variance=variance)(features)
    return layers.Dropout(dropout)(x) if dropout > 0 else x


def _inputs_of(tensor) -> list:
    """The model inputs a functional tensor is computed from (walks Keras' graph records)."""
    operation, index, _ = tensor._keras_history
    node = operation._inbound_nodes[index]
    if node.is_input:
        return [tensor]
    found: list = []
    for parent in node.input_tensors:
        found += [t for t in _inputs_of(parent) if all(t is not f for f in found)]
    return found
