"""EfficientNet-style MBConv: inverted residual with depthwise convolution and squeeze-and-excitation."""

from keras import layers

from .common import batch_norm_layer
from .registry import register
from .residual import can_downsample, check_strides, feature_map


@register("mbconv")
def mbconv(
    x,
    filters: int = 16,
    kernel_size: int = 3,
    expand_ratio: int = 4,
    se_ratio: float = 0.25,
    strides: int = 1,
    depth: int = 1,
    stochastic_depth: float = 0.0,
    activation: str = "swish",
):
    """`depth` MBConv units with `filters` output channels; the first downsamples by `strides`.

    Each unit: 1x1 expansion to `expand_ratio` x input channels, depthwise k x k, squeeze-and-excitation
    (`se_ratio` of the input channels; 0 turns it off), 1x1 linear projection. A unit whose input and
    output shapes match adds its input back, and `stochastic_depth` then drops the whole residual
    branch for a sample with that probability, in training only (as in keras.applications.EfficientNet).
    """
    feature_map(x, "mbconv")
    check_strides(strides, "mbconv")
    if filters < 1 or depth < 1 or expand_ratio < 1:
        raise ValueError(
            f"mbconv filters, depth and expand_ratio must be at least 1 (got {filters}, {depth}, {expand_ratio})"
        )
    if not 0 <= se_ratio <= 1 or not 0 <= stochastic_depth < 1:
        raise ValueError(
            f"mbconv se_ratio must be in [0, 1] and stochastic_depth in [0, 1) (got {se_ratio}, {stochastic_depth})"
        )
    for i in range(depth):
        s = strides if i == 0 and can_downsample(x) else 1
        channels = x.shape[-1]
        y = x
        if expand_ratio > 1:
            y = layers.Conv2D(channels * expand_ratio, 1, use_bias=False)(y)
            y = layers.Activation(activation)(batch_norm_layer()(y))
        y = layers.DepthwiseConv2D(kernel_size, strides=s, padding="same", use_bias=False)(y)
        y = layers.Activation(activation)(batch_norm_layer()(y))
        if se_ratio > 0:
            y = _squeeze_excite(y, max(1, int(channels * se_ratio)), activation)
        y = layers.Conv2D(filters, 1, use_bias=False)(y)
        y = batch_norm_layer()(y)
        if s == 1 and channels == filters:
            if stochastic_depth > 0:  # one draw per sample: the whole branch is kept or dropped
                y = layers.Dropout(stochastic_depth, noise_shape=(None, 1, 1, 1))(y)
            y = layers.Add()([x, y])
        x = y
    return x


def _squeeze_excite(x, squeezed: int, activation: str):
    """Channel weights in (0, 1) from the globally pooled map, multiplied back onto it."""
    w = layers.GlobalAveragePooling2D(keepdims=True)(x)
    w = layers.Conv2D(squeezed, 1, activation=activation)(w)
    w = layers.Conv2D(x.shape[-1], 1, activation="sigmoid")(w)
    return layers.Multiply()([x, w])
