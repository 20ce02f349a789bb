"""Search-space language: typed, conditional parameters loaded from YAML or built in Python."""

from .loader import load_space, resolve_space_path, shipped_spaces
from .params import Bool, Categorical, Fixed, Float, Int
from .space import Configuration, Group, Repeat, SearchSpace, SpaceError

__all__ = [
    "Bool",
    "Categorical",
    "Configuration",
    "Fixed",
    "Float",
    "Group",
    "Int",
    "Repeat",
    "SearchSpace",
    "SpaceError",
    "load_space",
    "resolve_space_path",
    "shipped_spaces",
]
