"""Keras building blocks, one module per family; importing this package registers them all."""
from . import common, conv, dense  # noqa: F401  (registration side effects)
from .registry import BLOCKS, apply_block, block_params, register

__all__ = ["BLOCKS", "apply_block", "block_params", "register"]
