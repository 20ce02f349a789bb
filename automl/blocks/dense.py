"""Dense / MLP blocks."""

from keras import layers, regularizers

from .common import batch_norm_layer
from .registry import register

NORMS = ("none", "batch", "layer")


@register("dense")
def dense(
    x,
    units: int = 64,
    depth: int = 1,
    activation: str = "relu",
    dropout: float = 0.0,
    norm: str = "none",
    l2: float = 0.0,
):
    """`depth` Dense layers of `units`, each with optional norm and dropout.

    A spatial input is flattened first, so a dense block may follow convolutions.
    """
    if norm not in NORMS:
        raise ValueError(f"dense norm must be one of {NORMS}, not {norm!r}")
    if len(x.shape) > 2:
        x = layers.Flatten()(x)
    for _ in range(depth):
        x = layers.Dense(units, use_bias=norm == "none", kernel_regularizer=regularizers.L2(l2) if l2 else None)(x)
        if norm == "batch":
            x = batch_norm_layer()(x)
        elif norm == "layer":
            x = layers.LayerNormalization()(x)
        x = layers.Activation(activation)(x)
        if dropout > 0:
            x = layers.Dropout(dropout)(x)
    return x
