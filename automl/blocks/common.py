"""Shape-agnostic blocks: global pooling / flatten, dropout, normalisation."""
from keras import layers

from .registry import register


@register("global_pool")
def global_pool(x, mode: str = "avg"):
    """Collapse spatial or time axes: `avg`, `max` or `flatten`."""
    if mode not in ("avg", "max", "flatten"):
        raise ValueError(f"global_pool mode must be avg, max or flatten, not {mode!r}")
    if len(x.shape) <= 2:
        return x
    if mode == "flatten":
        return layers.Flatten()(x)
    pool = {3: layers.GlobalAveragePooling1D, 4: layers.GlobalAveragePooling2D}
    if mode == "max":
        pool = {3: layers.GlobalMaxPooling1D, 4: layers.GlobalMaxPooling2D}
    return pool[len(x.shape)]()(x)


@register("dropout")
def dropout(x, rate: float = 0.0):
    return layers.Dropout(rate)(x) if rate > 0 else x


@register("batch_norm")
def batch_norm(x):
    return layers.BatchNormalization()(x)
