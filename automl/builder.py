"""Sampled architecture configuration -> `keras.Model` (functional API).

The architecture section is applied in order: each stage is a block (`{block: conv, ...}`) or a
list of blocks (a repeat). Top-level plain values (e.g. `activation: gelu`) are defaults for every
block that accepts them. Preprocessing learnt from the data goes in front, the task head at the end,
so the model takes raw inputs (pixels, table columns, strings, padded sequences) and is exported
whole. Text and table inputs go through an input block (`text`, `tabular`): the space's first
stage, or the kind's default input block when the space starts with another block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .names import input_names
from .space import Categorical, Fixed, SearchSpace, SpaceError
from .space.space import Group, Repeat
from .training import TRAINING_DEFAULTS

if TYPE_CHECKING:
    import keras


def keras_inputs(data) -> keras.KerasTensor | dict:
    """One input per table column (raw values, named after the columns: `names.input_names`), a
    string input for text, else one tensor of the data's per-sample shape."""
    import keras

    if data.columns is not None:
        names = input_names([c.name for c in data.columns])  # keys and names a SavedModel signature takes
        dtypes = {c.name: "float32" if c.kind == "numeric" else "string" for c in data.columns}
        return {names[c]: keras.Input(shape=(), dtype=dtypes[c], name=names[c]) for c in dtypes}
    if data.kind == "text":
        return keras.Input(shape=(), dtype="string", name="text")
    return keras.Input(shape=data.input_shape, name="input")


FEATURES = "features"  # the layer in front of the task head when the body is pretrained (pretraining.py)


def build_model(architecture: dict[str, Any], data, pretrained: bool = False) -> keras.Model:
    """`pretrained`: the body will be pretrained self-supervised; its features are layer-normalised
    before the head (`FEATURES`). A contrastive loss is blind to the features' scale: they came out
    ~100x smaller than a fresh body's, and a head on them barely learned from a few labels."""
    import keras
    from keras import layers

    from .blocks import INPUT_BLOCKS, apply_block, default_input_block

    inputs = keras_inputs(data)
    defaults = {k: v for k, v in architecture.items() if not isinstance(v, (dict, list))}
    stages = [
        cfg
        for stage in architecture.values()
        for cfg in (stage if isinstance(stage, list) else [stage])
        if isinstance(cfg, dict)
    ]
    x: Any = inputs  # a dict of column inputs for a table, until its input block makes one tensor
    prior = None  # scores an input block predicts itself (boosted trees), which the head adds to
    if not stages or stages[0]["block"] not in INPUT_BLOCKS:
        x = _default_input(x, data, defaults, default_input_block(data.kind), apply_block)
    for cfg in stages:
        x = apply_block(x, cfg["block"], {**defaults, **cfg}, data)
        if isinstance(x, tuple):
            x, prior = x
    if len(x.shape) == 3:
        x = layers.GlobalAveragePooling1D()(x)  # mask-aware: padded steps do not count
    elif len(x.shape) == 4:
        x = layers.GlobalAveragePooling2D()(x)
    elif len(x.shape) > 4:
        x = layers.Flatten()(x)
    if pretrained:
        x = layers.LayerNormalization(name=FEATURES)(x)
    if prior is not None:
        return keras.Model(inputs, _head_on_prior(x, prior, data))
    if data.task == "classification":
        outputs = layers.Dense(data.num_classes, activation="softmax", name="output")(x)
    else:
        x = layers.Dense(1, name="output_raw")(x)
        outputs = layers.Rescaling(data.target_std, offset=data.target_mean, name="output")(x)
    return keras.Model(inputs, outputs)


def _head_on_prior(x, prior, data):
    """Prior scores (logits, or the target in its units) + a zero-initialised dense head, so the
    model starts as the prior's predictions and the network learns the residual."""
    from keras import layers

    if data.task == "classification":
        logits = layers.Dense(data.num_classes, kernel_initializer="zeros", name="output_logits")(x)
        return layers.Activation("softmax", name="output")(layers.Add(name="prior_plus_head")([prior, logits]))
    residual = layers.Dense(1, kernel_initializer="zeros", name="output_raw")(x)
    residual = layers.Rescaling(data.target_std, name="output_scaled")(residual)
    return layers.Add(name="output")([prior, residual])


def _default_input(x, data, defaults: dict, input_block: str | None, apply_block):
    """Raw input -> tensor when the space does not start with an input block."""
    from keras import layers

    if input_block is not None:
        return apply_block(x, input_block, defaults, data)
    if data.masked:
        x = layers.Masking(mask_value=0.0, name="mask_padding")(x)
    if data.pixel_scale is not None:
        x = layers.Rescaling(data.pixel_scale, name="rescale")(x)
    if data.feature_mean is not None:
        x = layers.Normalization(mean=data.feature_mean, variance=data.feature_var, name="normalize")(x)
    return x


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
            problems.append(
                (
                    f"{path}.{key}",
                    f"not a parameter of block {'/'.join(map(str, names))} (accepted: {', '.join(sorted(accepted))})",
                )
            )
