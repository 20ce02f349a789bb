"""Search-space language: typed, conditional parameters loaded from YAML or built in Python."""

from .compression import COMPRESSION_DEFAULTS, compression_settings
from .loader import load_configurations, load_space, resolve_space_path, shipped_spaces
from .params import Bool, Categorical, Fixed, Float, Int, OneOf
from .space import Configuration, Group, Repeat, SearchSpace, SpaceError

__all__ = [
    "COMPRESSION_DEFAULTS",
    "Bool",
    "Categorical",
    "Configuration",
    "Fixed",
    "Float",
    "Group",
    "Int",
    "OneOf",
    "Repeat",
    "SearchSpace",
    "SpaceError",
    "compression_settings",
    "load_configurations",
    "load_space",
    "resolve_space_path",
    "shipped_spaces",
]
