"""ResNet-style residual blocks: basic or bottleneck units, projection shortcut when the shape changes."""

from keras import layers

from .common import batch_norm_layer
from .registry import register


def feature_map(x, block: str):
    """Image blocks need (batch, height, width, channels); say so instead of failing deep in Keras."""
    if len(x.shape) != 4:
        raise ValueError(
            f"{block} block needs image feature maps (batch, height, width, channels); "
            f"it got shape {tuple(x.shape)} (put it before global_pool/dense blocks)"
        )


def check_strides(strides, block: str):
    if strides not in (1, 2):
        raise ValueError(f"{block} strides must be 1 or 2, not {strides!r}")


def can_downsample(x) -> bool:
    """Stop halving once the map is 1 pixel wide, so deep stacks fit tiny images (8x8 digits)."""
    return min(x.shape[1] or 2, x.shape[2] or 2) >= 2


@register("residual")
def residual(
    x,
    filters: int = 32,
    kernel_size: int = 3,
    depth: int = 1,
    bottleneck: bool = False,
    strides: int = 1,
    activation: str = "relu",
    dropout: float = 0.0,
):
    """A ResNet stage: `depth` residual units with `filters` output channels; the first unit
    downsamples by `strides`.

    basic unit: two k x k convolutions; bottleneck unit: 1x1 down to filters/4, k x k, 1x1 back up.
    The shortcut is the identity when the shape is unchanged, else a strided 1x1 projection.
    """
    feature_map(x, "residual")
    check_strides(strides, "residual")
    if filters < 1 or depth < 1:
        raise ValueError(f"residual filters and depth must be at least 1 (got filters={filters}, depth={depth})")
    for i in range(depth):
        s = strides if i == 0 and can_downsample(x) else 1
        shortcut = x
        if s != 1 or x.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=s, use_bias=False)(x)
            shortcut = batch_norm_layer()(shortcut)
        if bottleneck:
            inner = max(1, filters // 4)
            y = _conv_bn(x, inner, 1, 1, activation)
            y = _conv_bn(y, inner, kernel_size, s, activation)
            y = _conv_bn(y, filters, 1, 1, None)
        else:
            y = _conv_bn(x, filters, kernel_size, s, activation)
            y = _conv_bn(y, filters, kernel_size, 1, None)
        x = layers.Activation(activation)(layers.Add()([shortcut, y]))
    if dropout > 0:
        x = layers.Dropout(dropout)(x)
    return x


def _conv_bn(x, filters, kernel_size, strides, activation):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False)(x)
    x = batch_norm_layer()(x)
    return layers.Activation(activation)(x) if activation else x
