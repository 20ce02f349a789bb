"""Image data augmentation as searchable choices, active in training only.

Keras' random preprocessing layers pass images through unchanged at inference, so the saved and
the exported (TFLite) model compute exactly what the model without augmentation would.
"""

from keras import layers

from .registry import register
from .residual import feature_map

FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")


@register("augment")
def augment(
    x, flip: str = "none", rotation: float = 0.0, zoom: float = 0.0, translation: float = 0.0, contrast: float = 0.0
):
    """Random flips, rotation (fraction of a full turn), zoom, translation (fraction of the size) and
    contrast; a factor of 0 leaves that layer out.

    Place it first: it sees the builder's rescaled pixels, which contrast assumes lie in [0, 1].
    """
    feature_map(x, "augment")
    if flip not in FLIPS:
        raise ValueError(f"augment flip must be one of {FLIPS}, not {flip!r}")
    for name, value, high in (
        ("rotation", rotation, 0.5),
        ("zoom", zoom, 0.9),
        ("translation", translation, 0.5),
        ("contrast", contrast, 1.0),
    ):
        if not 0 <= value <= high:
            raise ValueError(f"augment {name} must be between 0 and {high}, not {value!r}")
    augmenters = []
    if flip != "none":
        augmenters.append(layers.RandomFlip(flip))
    if rotation > 0:
        augmenters.append(layers.RandomRotation(rotation, fill_mode="nearest"))
    if zoom > 0:
        augmenters.append(layers.RandomZoom(zoom, fill_mode="nearest"))
    if translation > 0:
        augmenters.append(layers.RandomTranslation(translation, translation, fill_mode="nearest"))
    if contrast > 0:
        augmenters.append(layers.RandomContrast(contrast, value_range=(0, 1)))
    for layer in augmenters:
        # Keras' random layers default to training=True: a call without `training` (the serving
        # function of `model.export`) would augment and switch every later layer, batch norm
        # included, to training mode. training=False recorded in the graph makes such calls
        # inference; fit still overrides it with training=True.
        x = layer(x, training=False)
    return x
