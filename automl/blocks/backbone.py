"""Transfer learning: a `keras.applications` network or a saved `.keras` model as a feature extractor.

Nothing is downloaded: an application is built with `weights=None` (architecture only) or loads a
weights file the user names. The backbone is one nested model named `backbone`; training.py trains
its unfrozen variables at `fine_tune_learning_rate` (see `fine_tuned_variables`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
from keras import layers

from .registry import register
from .residual import feature_map

BACKBONE = "backbone"
MIN_SIZE = 32  # the smallest height/width keras.applications accept
PREPROCESSING = ("rescale", "normalize")  # the builder's input layers, skipped in a saved automl model

# name -> (constructor, pixel range it expects, whether it takes alpha, extra arguments).
# MobileNetV3's own rescaling is switched off so every application is fed by the same code below.
APPLICATIONS: dict[str, tuple[Callable[..., Any], tuple[float, float], bool, dict[str, Any]]] = {
    "mobilenet_v2": (keras.applications.MobileNetV2, (-1.0, 1.0), True, {}),
    "mobilenet_v3_small": (keras.applications.MobileNetV3Small, (-1.0, 1.0), True, {"include_preprocessing": False}),
    "mobilenet_v3_large": (keras.applications.MobileNetV3Large, (-1.0, 1.0), True, {"include_preprocessing": False}),
    "efficientnet_b0": (keras.applications.EfficientNetB0, (0.0, 255.0), False, {}),
}


@register("backbone")
def backbone(
    x,
    source: str = "mobilenet_v2",
    alpha: float = 1.0,
    weights: str | None = None,
    frozen_fraction: float = 0.0,
    image_size: int | None = None,
):
    """Features from a pretrained or architecture-only network, the first `frozen_fraction` of its
    layers (those with weights, input side first) frozen.

    `source`: an application name (see APPLICATIONS) or the path of a saved `.keras` model, e.g. the
    best model of an earlier study, cut before its last Dense layer (its head) and after its input
    rescaling. `weights`: a local weights file for the application (`model.save_weights` of the
    same application with include_top=False). Pixels arrive in [0, 1] (the builder's rescaling) and
    are mapped to the range the application expects; grayscale is repeated to 3 channels and small
    images are resized up to `image_size` (default: the input size, at least 32).
    """
    feature_map(x, "backbone")
    if not 0 <= frozen_fraction <= 1:
        raise ValueError(f"backbone frozen_fraction must be between 0 and 1, not {frozen_fraction!r}")
    if image_size is not None and image_size < MIN_SIZE:
        raise ValueError(f"backbone image_size must be at least {MIN_SIZE}, not {image_size}")
    if str(source).endswith(".keras"):
        if weights is not None or alpha != 1.0 or image_size is not None:
            raise ValueError(
                f"backbone {source}: weights, alpha and image_size apply to keras.applications "
                "only; a .keras model brings its own weights and input size"
            )
        model = _saved_model(Path(source))
        x = _fit_input(x, model.inputs[0].shape[1:3], model.inputs[0].shape[-1], source)
    else:
        height, width = (
            (image_size, image_size) if image_size else (max(x.shape[1], MIN_SIZE), max(x.shape[2], MIN_SIZE))
        )
        channels = 3 if x.shape[-1] == 1 else x.shape[-1]
        model, (low, high) = _application(source, alpha, weights, (height, width, channels))
        x = _fit_input(x, (height, width), channels, source)
        x = layers.Rescaling(high - low, offset=low)(x)
    _freeze(model, frozen_fraction)
    return model(x)


def fine_tuned_variables(model) -> list:
    """The trainable (unfrozen) variables of the backbone in `model`, for training.py."""
    return [v for layer in model.layers if layer.name == BACKBONE for v in layer.trainable_variables]


def _application(name: str, alpha: float, weights: str | None, shape: tuple):
    if name not in APPLICATIONS:
        raise ValueError(
            f"backbone source {name!r} is neither a known application ({', '.join(APPLICATIONS)}) nor a .keras file"
        )
    build, pixel_range, takes_alpha, extra = APPLICATIONS[name]
    if takes_alpha:
        extra = {**extra, "alpha": alpha}
    elif alpha != 1.0:
        raise ValueError(f"backbone alpha applies to the mobilenet applications, not {name}")
    if weights == "imagenet":
        raise ValueError(
            "backbone weights='imagenet' would download them; give the path of a local "
            "weights file or leave weights empty (architecture only)"
        )
    if weights is not None and not Path(weights).is_file():
        raise ValueError(f"backbone weights file {weights}: no such file")
    if weights is not None and shape[-1] != 3:
        raise ValueError(
            f"backbone weights file {weights}: pretrained weights need 1 or 3 image channels, the input has {shape[-1]}"
        )
    try:
        return build(input_shape=shape, include_top=False, weights=weights, name=BACKBONE, **extra), pixel_range
    except ValueError as exc:
        if weights is None:
            raise
        raise ValueError(
            f"backbone weights file {weights} does not fit {name} (alpha {alpha}, input "
            f"{shape}, include_top=False): {exc}"
        ) from None


def _saved_model(path: Path):
    """The saved model between its input rescaling and its last Dense layer."""
    if not path.is_file():
        raise ValueError(f"backbone source {path}: no such file")
    try:
        saved = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ValueError(
            f"backbone source {path}: cannot load as a Keras model ({type(exc).__name__}: {exc})"
        ) from None
    if len(saved.inputs) != 1:
        raise ValueError(f"backbone source {path}: needs a model with one image input, it has {len(saved.inputs)}")
    start = saved.inputs[0]
    for layer in saved.layers:
        if layer.name in PREPROCESSING and layer.input is start:
            start = layer.output
    dense = [layer for layer in saved.layers if isinstance(layer, layers.Dense)]
    end = dense[-1].input if dense else saved.outputs[0]
    if len(start.shape) != 4:
        raise ValueError(f"backbone source {path}: takes input of shape {tuple(start.shape[1:])}, not images")
    return keras.Model(start, end, name=BACKBONE)


def _fit_input(x, size, channels: int, source: str):
    """Repeat grayscale to the channels the backbone takes and resize to its height and width."""
    if x.shape[-1] != channels:
        if x.shape[-1] != 1:
            raise ValueError(f"backbone {source} takes {channels} channels, the images have {x.shape[-1]}")
        x = layers.Concatenate()([x] * channels)
    if tuple(size) != tuple(x.shape[1:3]):
        # Resizing's call defaults to training=True, which a call without `training` (model.export)
        # would pass on to the backbone's batch norm; record inference (see augment.py)
        x = layers.Resizing(*size)(x, training=False)
    return x


def _freeze(model, fraction: float) -> None:
    weighted = [layer for layer in _leaves(model) if layer.weights]
    for layer in weighted[: round(fraction * len(weighted))]:
        layer.trainable = False


def _leaves(model) -> list:
    out = []
    for layer in model.layers:
        out += _leaves(layer) if isinstance(layer, keras.Model) else [layer]
    return out
