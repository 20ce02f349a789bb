"""Recurrent (LSTM, GRU) and 1-D convolution blocks for sequences and embedded text."""

import warnings

from keras import layers

from .common import batch_norm_layer
from .registry import register

POOLING = ("max", "avg", "none")
# Conv1D drops a padding mask (documented on `conv1d`); Keras would warn at every call of the model.
warnings.filterwarnings("ignore", message=r"Layer 'conv1d\w*' \(of type Conv1D\) was passed an input with a mask")


def _recurrent(cell, x, units, depth, bidirectional, dropout, return_sequences, unroll):
    if len(x.shape) != 3:
        raise ValueError(f"recurrent blocks need a sequence (batch, steps, features), got shape {tuple(x.shape)}")
    if unroll and bidirectional and (return_sequences or depth > 1):
        # Keras 3.15 zeroes an unrolled backward layer's masked outputs at unreversed positions
        raise ValueError(
            "unroll with bidirectional layers that return sequences gives wrong outputs on padded "
            "input (a Keras masking bug); use unroll only for one-way or last-state layers"
        )
    for i in range(depth):
        layer = cell(units, return_sequences=return_sequences or i < depth - 1, dropout=dropout, unroll=unroll)
        x = (layers.Bidirectional(layer) if bidirectional else layer)(x)
    return x


def _recurrent_block(cell, doc: str):
    """A registered recurrent block over `cell` (its keyword arguments are the searchable parameters)."""

    def block(
        x,
        units: int = 32,
        depth: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        return_sequences: bool = False,
        unroll: bool = False,
    ):
        return _recurrent(cell, x, units, depth, bidirectional, dropout, return_sequences, unroll)

    block.__doc__ = doc
    return block


lstm = register("lstm")(
    _recurrent_block(
        layers.LSTM,
        """`depth` stacked LSTM layers (padded steps are skipped via the mask); the last returns its final
    state unless `return_sequences`. `unroll` trades graph size for a loop-free model (faster on
    short sequences, and TFLite-convertible at any batch size).""",
    )
)
gru = register("gru")(
    _recurrent_block(layers.GRU, "Like `lstm` with GRU cells (fewer weights, often as good on short sequences).")
)


@register("conv1d")
def conv1d(
    x,
    filters: int = 32,
    kernel_size: int = 3,
    depth: int = 1,
    pooling: str = "max",
    batch_norm: bool = False,
    dropout: float = 0.0,
    activation: str = "relu",
):
    """`depth` Conv1D layers then a 2x downsampling along time by `pooling` (max, avg or none).

    Convolutions do not carry a padding mask: padded steps are convolved like the others.
    """
    if len(x.shape) != 3:
        raise ValueError(f"conv1d needs a sequence (batch, steps, features), got shape {tuple(x.shape)}")
    if pooling not in POOLING:
        raise ValueError(f"conv1d pooling must be one of {POOLING}, not {pooling!r}")
    for _ in range(depth):
        x = layers.Conv1D(filters, kernel_size, padding="same", use_bias=not batch_norm)(x)
        if batch_norm:
            x = batch_norm_layer()(x)
        x = layers.Activation(activation)(x)
    if (x.shape[1] or 2) >= 2 and pooling != "none":
        x = (layers.MaxPooling1D if pooling == "max" else layers.AveragePooling1D)(2, padding="same")(x)
    if dropout > 0:
        x = layers.Dropout(dropout)(x)
    return x
