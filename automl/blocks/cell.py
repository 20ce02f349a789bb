"""Cell-based search: each stage is a cell whose operation (conv, residual or mbconv) is searched.

A space repeats `block: cell` for a searched number of stages; parameters of one operation carry
`when: {op: ...}` so they exist only in stages that chose it (see search_spaces/image_cells.yaml).
"""

from keras import layers

from .conv import conv
from .mbconv import mbconv
from .registry import register
from .residual import feature_map, residual

OPS = ("conv", "residual", "mbconv")


@register("cell")
def cell(
    x,
    op: str = "conv",
    filters: int = 32,
    kernel_size: int = 3,
    depth: int = 1,
    downsample: bool = False,
    skip: bool = True,
    activation: str = "relu",
    separable: bool = False,
    bottleneck: bool = False,
    expand_ratio: int = 4,
    se_ratio: float = 0.25,
):
    """One stage of width `filters`, halving the map when `downsample`.

    Operation-specific: `skip`, `separable` (conv), `bottleneck` (residual), `expand_ratio`, `se_ratio`
    (mbconv). `skip` adds a conv cell's input to its output wherever the shapes allow (same size and
    width); residual cells always have a shortcut (projected when the shape changes) and mbconv
    cells one where the shapes match.
    """
    feature_map(x, "cell")
    strides = 2 if downsample else 1
    shared = {"filters": filters, "kernel_size": kernel_size, "depth": depth, "activation": activation}
    if op == "conv":
        y = conv(x, **shared, pooling="strided" if downsample else "none", separable=separable)
    elif op == "residual":
        y = residual(x, **shared, bottleneck=bottleneck, strides=strides)
    elif op == "mbconv":
        y = mbconv(x, **shared, expand_ratio=expand_ratio, se_ratio=se_ratio, strides=strides)
    else:
        raise ValueError(f"cell op must be one of {OPS}, not {op!r}")
    if op == "conv" and skip and tuple(y.shape[1:]) == tuple(x.shape[1:]):
        y = layers.Add()([x, y])
    return y
