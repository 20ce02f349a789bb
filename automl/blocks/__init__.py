"""Keras building blocks, one module per family; importing this package registers them all."""

from . import augment, backbone, cell, common, conv, dense, mbconv, recurrent, residual, tabular, text, transformer  # noqa: F401  (registration side effects)  # noqa: F401  (image blocks)  # noqa: F401  (sequence, table and text blocks)
from .registry import BLOCKS, INPUT_BLOCKS, apply_block, block_params, default_input_block, register

__all__ = ["BLOCKS", "INPUT_BLOCKS", "apply_block", "block_params", "default_input_block", "register"]
