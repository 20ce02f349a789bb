"""Keras building blocks, one module per family; importing this package registers them all."""
from . import common, conv, dense  # noqa: F401  (registration side effects)
from . import augment, backbone, cell, mbconv, residual  # noqa: F401  (image blocks)
from . import recurrent, tabular, text, transformer  # noqa: F401  (sequence, table and text blocks)
from .registry import BLOCKS, INPUT_BLOCKS, apply_block, block_params, default_input_block, register

__all__ = ["BLOCKS", "INPUT_BLOCKS", "apply_block", "block_params", "default_input_block", "register"]
