"""Keras building blocks, one module per family; importing this package registers them all."""

from . import (  # noqa: F401  (registration side effects)
    augment,
    backbone,
    cell,
    common,
    conv,
    dense,
    mbconv,
    recurrent,
    residual,
    series,
    tabular,
    text,
    transformer,
)
from .registry import BLOCKS, INPUT_BLOCKS, apply_block, block_params, default_input_block, register

__all__ = ["BLOCKS", "INPUT_BLOCKS", "apply_block", "block_params", "default_input_block", "register"]
