"""Transformer encoder for token or numeric sequences: position embedding, then attention layers."""

import keras
from keras import layers, ops

from .registry import register

NORMS = ("pre", "post")


@keras.saving.register_keras_serializable(package="automl")
class PositionEmbedding(layers.Layer):
    """Adds a learned vector per position (the sequence length is fixed when the layer is built).

    Attention alone ignores order; this gives each step its place. Masks pass through.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        if input_shape[-2] is None:
            raise ValueError("position embedding needs a fixed sequence length")
        self.positions = self.add_weight(shape=tuple(input_shape[-2:]), initializer="glorot_uniform", name="positions")

    def call(self, x):
        return x + ops.cast(self.positions, x.dtype)


@register("position_embedding")
def position_embedding(x, dim: int = 0):
    """Projects each step to `dim` features (0: keep the width, e.g. after a text embedding), then
    adds a learned position embedding. For numeric sequences / time series this is the input layer
    of a transformer."""
    _check_sequence(x, "position_embedding")
    if dim and dim != x.shape[-1]:
        x = layers.Dense(dim)(x)
    return PositionEmbedding()(x)


@register("transformer")
def transformer(
    x,
    heads: int = 2,
    key_dim: int = 16,
    ff_units: int = 64,
    depth: int = 1,
    norm: str = "pre",
    dropout: float = 0.1,
    activation: str = "gelu",
):
    """`depth` encoder layers: multi-head self-attention and a feed-forward net, each residual.

    `norm: pre` normalises each sub-layer's input (steadier on small data, a final norm closes the
    stack); `post` normalises after each residual sum (the original transformer). Padding masks
    from a text block or masked sequence input keep attention off padded steps.
    """
    _check_sequence(x, "transformer")
    if norm not in NORMS:
        raise ValueError(f"transformer norm must be one of {NORMS}, not {norm!r}")
    width = x.shape[-1]
    for _ in range(depth):
        h = layers.LayerNormalization(epsilon=1e-6)(x) if norm == "pre" else x
        h = layers.MultiHeadAttention(heads, key_dim, dropout=dropout)(h, h)
        x = layers.Add()([x, layers.Dropout(dropout)(h)])
        if norm == "post":
            x = layers.LayerNormalization(epsilon=1e-6)(x)
        h = layers.LayerNormalization(epsilon=1e-6)(x) if norm == "pre" else x
        h = layers.Dense(ff_units, activation=activation)(h)
        h = layers.Dense(width)(h)
        x = layers.Add()([x, layers.Dropout(dropout)(h)])
        if norm == "post":
            x = layers.LayerNormalization(epsilon=1e-6)(x)
    if norm == "pre" and depth:
        x = layers.LayerNormalization(epsilon=1e-6)(x)
    return x


def _check_sequence(x, block: str):
    if len(x.shape) != 3:
        raise ValueError(
            f"the {block} block needs a sequence (batch, steps, features), got shape {tuple(x.shape)}; "
            f"use it on text or sequence input"
        )
