"""2-D convolution blocks with a pooling choice."""

from keras import layers

from .common import batch_norm_layer
from .registry import register

POOLING = ("max", "avg", "none", "strided")


@register("conv")
def conv(
    x,
    filters: int = 32,
    kernel_size: int = 3,
    depth: int = 1,
    pooling: str = "max",
    batch_norm: bool = True,
    dropout: float = 0.0,
    activation: str = "relu",
    separable: bool = False,
):
    """`depth` convolutions (optionally separable) then a 2x downsampling by `pooling`.

    Downsampling is skipped once the feature map is 1 pixel wide, so deep stacks fit small images.
    """
    if pooling not in POOLING:
        raise ValueError(f"conv pooling must be one of {POOLING}, not {pooling!r}")
    Conv = layers.SeparableConv2D if separable else layers.Conv2D
    can_pool = min(x.shape[1] or 2, x.shape[2] or 2) >= 2
    for i in range(depth):
        strides = 2 if (pooling == "strided" and can_pool and i == depth - 1) else 1
        x = Conv(filters, kernel_size, strides=strides, padding="same", use_bias=not batch_norm)(x)
        if batch_norm:
            x = batch_norm_layer()(x)
        x = layers.Activation(activation)(x)
    if can_pool and pooling == "max":
        x = layers.MaxPooling2D(2, padding="same")(x)
    elif can_pool and pooling == "avg":
        x = layers.AveragePooling2D(2, padding="same")(x)
    if dropout > 0:
        x = layers.Dropout(dropout)(x)
    return x
