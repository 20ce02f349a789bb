"""Block registry: a block is a function `(x, **params) -> x` over Keras functional tensors.

Its keyword arguments are its searchable parameters; the space validator reads them from the
signature, so a YAML key that no candidate block accepts is reported before any trial runs.

Two additions for blocks that start from the raw input:
- a block that declares a parameter named `data` receives the `Dataset` from the builder (to learn
  a vocabulary or column statistics from the training split); `data` is not a searchable parameter.
- `@register(name, input_for=KIND)` marks a block that takes the model's raw input for data of that
  kind (strings, a dict of table columns). When a space does not start with such a block, the
  builder puts the kind's first registered input block in front with its default parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

BLOCKS: dict[str, Callable] = {}
INPUT_BLOCKS: dict[str, str] = {}  # block name -> the data kind whose raw input it takes
DATA_PARAM = "data"
# a Dataset.extra flag blocks read: the training rows include the validation rows (a refit), so
# nothing fit inside a block may early-stop on validation
VALIDATION_IN_TRAINING = "validation_in_training"
# names of the layers whose scores a model starts from, fitted before training (boosted trees, a
# fitted linear model): the builder adds a zero-initialised head to them, and training must beat them
PRIOR_LAYERS = ("trees", "linear_prior")


def register(name: str, *, input_for: str | None = None):
    def wrap(fn: Callable) -> Callable:
        if name in BLOCKS:
            raise ValueError(f"block {name!r} registered twice")
        BLOCKS[name] = fn
        if input_for:
            INPUT_BLOCKS[name] = input_for
        return fn

    return wrap


def default_input_block(kind: str) -> str | None:
    """The input block the builder adds for data of `kind` when a space starts without one."""
    return next((name for name, k in INPUT_BLOCKS.items() if k == kind), None)


def block_params(name: str) -> dict[str, inspect.Parameter]:
    """The searchable parameters of a block (all but the input tensor and `data`)."""
    params = list(inspect.signature(BLOCKS[name]).parameters.values())[1:]
    return {p.name: p for p in params if p.name != DATA_PARAM}


def apply_block(x, name: str, params: dict, data=None):
    """Call block `name` with the params it accepts (others belong to other candidate blocks)."""
    accepted = block_params(name)
    kwargs = {k: v for k, v in params.items() if k in accepted}
    if DATA_PARAM in inspect.signature(BLOCKS[name]).parameters:
        kwargs[DATA_PARAM] = data
    return BLOCKS[name](x, **kwargs)
