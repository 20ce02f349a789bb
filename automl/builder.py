"""Sampled architecture configuration -> `keras.Model` (functional API).

The architecture section is applied in order: each stage is a block (`{block: conv, ...}`) or a
list of blocks (a repeat). Top-level plain values (e.g. `activation: gelu`) are defaults for every
block that accepts them. Preprocessing learnt from the data goes in front, the task head at the end,
so the model takes raw inputs and is exported whole.
"""
from __future__ import annotations

from typing import Any

from .space import Categorical, Fixed, SearchSpace, SpaceError
from .space.space import Group, Repeat
from .training import TRAINING_DEFAULTS


def build_model(architecture: dict[str, Any], data) -> "keras.Model":
    import keras
    from keras import layers

    from .blocks import apply_block

    inputs = keras.Input(shape=data.input_shape, name="input")
    x = inputs
    if data.pixel_scale is not None:
        x = layers.Rescaling(data.pixel_scale, name="rescale")(x)
    if data.feature_mean is not None:
        x = layers.Normalization(mean=data.feature_mean, variance=data.feature_var, name="normalize")(x)
    defaults = {k: v for k, v in architecture.items() if not isinstance(v, (dict, list))}
    for stage in architecture.values():
        for cfg in (stage if isinstance(stage, list) else [stage]):
            if isinstance(cfg, dict):
                x = apply_block(x, cfg["block"], {**defaults, **cfg})
    if len(x.shape) > 2:
        x = layers.GlobalAveragePooling2D()(x) if len(x.shape) == 4 else layers.Flatten()(x)
    if data.task == "classification":
        outputs = layers.Dense(data.num_classes, activation="softmax", name="output")(x)
    else:
        x = layers.Dense(1, name="output_raw")(x)
        outputs = layers.Rescaling(data.target_std, offset=data.target_mean, name="output")(x)
    return keras.Model(inputs, outputs)


def validate_space(space: SearchSpace) -> None:
    """Check block names, block parameters and training keys before any trial runs."""
    from .blocks import BLOCKS, block_params

    problems: list[tuple[str, str]] = []
    for key, node in space.architecture.items.items():
        path = f"architecture.{key}"
        if isinstance(node, Repeat):
            _check_block(node.each, f"{path}.each", problems, BLOCKS, block_params)
        elif isinstance(node, Group):
            _check_block(node, path, problems, BLOCKS, block_params)
    for key in space.training.items:
        if key not in TRAINING_DEFAULTS:
            problems.append((f"training.{key}", f"unknown training setting (known: {', '.join(TRAINING_DEFAULTS)})"))
    if problems:
        raise SpaceError(problems, space.source)


def _check_block(group: Group, path: str, problems, blocks, block_params) -> None:
    node = group.items.get("block")
    if node is None:
        problems.append((f"{path}.block", "missing: every stage names its block"))
        return
    names = node.choices if isinstance(node, Categorical) else [node.value] if isinstance(node, Fixed) else None
    if names is None:
        problems.append((f"{path}.block", "must be a block name or a categorical of block names"))
        return
    unknown = [n for n in names if n not in blocks]
    if unknown:
        problems.append((f"{path}.block", f"unknown block {unknown[0]!r} (known: {', '.join(sorted(blocks))})"))
        return
    accepted = set().union(*(block_params(n) for n in names))
    for key in group.items:
        if key != "block" and key not in accepted:
            problems.append((f"{path}.{key}", f"not a parameter of block {'/'.join(map(str, names))} "
                                              f"(accepted: {', '.join(sorted(accepted))})"))
