"""Block registry: a block is a function `(x, **params) -> x` over Keras functional tensors.

Its keyword arguments are its searchable parameters; the space validator reads them from the
signature, so a YAML key that no candidate block accepts is reported before any trial runs.
"""
from __future__ import annotations

import inspect
from typing import Callable

BLOCKS: dict[str, Callable] = {}


def register(name: str):
    def wrap(fn: Callable) -> Callable:
        if name in BLOCKS:
            raise ValueError(f"block {name!r} registered twice")
        BLOCKS[name] = fn
        return fn
    return wrap


def block_params(name: str) -> dict[str, inspect.Parameter]:
    """The searchable parameters of a block (all but the input tensor)."""
    params = list(inspect.signature(BLOCKS[name]).parameters.values())[1:]
    return {p.name: p for p in params}


def apply_block(x, name: str, params: dict):
    """Call block `name` with the params it accepts (others belong to other candidate blocks)."""
    accepted = block_params(name)
    return BLOCKS[name](x, **{k: v for k, v in params.items() if k in accepted})
