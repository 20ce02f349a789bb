"""Numeric feature embeddings for tables (Gorishniy et al. 2022, "On Embeddings for Numerical Features
in Tabular Deep Learning"): an MLP fed each standardised number through a richer encoding fits
the irregular, step-like functions of tables that gradient-boosted trees find easily.

Both layers encode the first `features` columns of their input (the standardised numbers) and pass
the rest (missing-value indicators) through unchanged.
- `PiecewiseLinearEncoding` (PLE): quantile bins of the training split; a value is 1 in every bin
  below it, its fraction of the bin it falls in, 0 above (no weights).
- `PeriodicEncoding` (PLR): sin/cos(2 pi c x) for trainable frequencies c ~ N(0, sigma), then a
  linear layer + ReLU per feature.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

NUMERIC = ("standard", "periodic", "piecewise_linear")
OPEN = 1e9  # stands in for an unbounded side: the first bin extrapolates below, the last above


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """At most `bins` bins between distinct training quantiles (ties merge bins); a constant
    column gets one bin of width 1."""
    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1))) if len(values) else np.zeros(1)
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0] + 1.0])
    return [float(e) for e in edges]


@keras.saving.register_keras_serializable(package="automl")
class PiecewiseLinearEncoding(layers.Layer):
    """Each of the first len(edges) columns -> max(len(e) - 1) bin values (see the module docstring);
    a column with fewer bins pads with zeros."""

    def __init__(self, edges, **kwargs):
        super().__init__(**kwargs)
        self.edges = [[float(e) for e in column] for column in edges]
        self.bins = max(len(e) - 1 for e in self.edges)
        left = np.zeros((len(self.edges), self.bins), "float32")
        width, low, high, used = np.ones_like(left), np.zeros_like(left), np.ones_like(left), np.zeros_like(left)
        for i, column in enumerate(self.edges):
            n = len(column) - 1
            left[i, :n], width[i, :n], used[i, :n] = column[:-1], np.diff(column), 1.0
            low[i, 0], high[i, n - 1] = -OPEN, OPEN
        self._constants = (left, width, low, high, used)

    def call(self, x):
        n = len(self.edges)
        left, width, low, high, used = (ops.convert_to_tensor(c, x.dtype) for c in self._constants)
        ratio = (ops.expand_dims(x[:, :n], -1) - left) / width
        encoded = ops.minimum(ops.maximum(ratio, low), high) * used
        return ops.concatenate([ops.reshape(encoded, (-1, n * self.bins)), x[:, n:]], axis=1)

    def compute_output_shape(self, input_shape):
        n = len(self.edges)
        return (input_shape[0], n * self.bins + input_shape[1] - n)

    def get_config(self):
        return {**super().get_config(), "edges": self.edges}


@keras.saving.register_keras_serializable(package="automl")
class PeriodicEncoding(layers.Layer):
    """Each of the first `features` columns -> ReLU(W_f [sin(2 pi c_f x), cos(2 pi c_f x)] + b_f)
    of `dim` values, with `frequencies` trainable frequencies c_f ~ N(0, sigma) per feature."""

    def __init__(self, features: int, frequencies: int = 16, sigma: float = 0.1, dim: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.features, self.frequencies, self.sigma, self.dim = int(features), int(frequencies), float(sigma), int(dim)

    def build(self, input_shape):
        f, k, d = self.features, self.frequencies, self.dim
        self.c = self.add_weight(shape=(f, k), initializer=keras.initializers.RandomNormal(0.0, self.sigma), name="c")
        bound = 1.0 / math.sqrt(2 * k)  # a linear layer's default fan-in range
        init = keras.initializers.RandomUniform(-bound, bound)
        self.w = self.add_weight(shape=(f, 2 * k, d), initializer=init, name="w")
        self.b = self.add_weight(shape=(f, d), initializer=init, name="b")

    def call(self, x):
        f = self.features
        angle = 2 * math.pi * ops.expand_dims(x[:, :f], -1) * self.c  # (batch, f, k)
        waves = ops.concatenate([ops.sin(angle), ops.cos(angle)], axis=-1)  # (batch, f, 2k)
        # per-feature linear layers as one batched matmul over features: (f, batch, 2k) @ (f, 2k, d)
        mixed = ops.transpose(ops.matmul(ops.transpose(waves, (1, 0, 2)), self.w), (1, 0, 2)) + self.b
        encoded = ops.reshape(ops.relu(mixed), (-1, f * self.dim))
        return ops.concatenate([encoded, x[:, f:]], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.features * self.dim + input_shape[1] - self.features)

    def get_config(self):
        return {
            **super().get_config(),
            "features": self.features,
            "frequencies": self.frequencies,
            "sigma": self.sigma,
            "dim": self.dim,
        }


def encode_numeric(z, standardized_train: list[np.ndarray], numeric: str, bins: int, frequencies: int, sigma, dim):
    """The first len(standardized_train) columns of `z` (standardised numbers) encoded as `numeric`;
    `standardized_train` holds each column's standardised training values (for the PLE bins)."""
    if numeric not in NUMERIC:
        raise ValueError(f"tabular numeric must be one of {NUMERIC}, not {numeric!r}")
    if numeric == "standard":
        return z
    if numeric == "piecewise_linear":
        if bins < 1:
            raise ValueError(f"tabular numeric_bins must be at least 1, not {bins}")
        edges = [quantile_edges(v, bins) for v in standardized_train]
        return PiecewiseLinearEncoding(edges, name="numeric_ple")(z)
    if frequencies < 1 or dim < 1 or not sigma > 0:
        raise ValueError(
            f"tabular periodic encoding needs numeric_frequencies >= 1, numeric_dim >= 1 and numeric_sigma > 0 "
            f"(got {frequencies}, {dim}, {sigma})"
        )
    return PeriodicEncoding(len(standardized_train), frequencies, sigma, dim, name="numeric_periodic")(z)
