"""The `compression:` section of a space: how a trained candidate is made small for a phone.

A trial whose configuration asks for it is fine-tuned after training: magnitude pruning up to
`sparsity` (along the `schedule`, whole channels if `structured`), then quantization-aware training
if `qat`, `epochs` epochs each (see automl/compression.py). The keys and the values they allow are
checked when the space is loaded, so a bad value is one error naming the key, before any training.
"""

from __future__ import annotations

from typing import Any

from .params import check_flat_section, flat_settings

COMPRESSION_DEFAULTS: dict[str, Any] = {
    "sparsity": 0.0,  # share of the prunable weights set to zero (0: no pruning)
    "schedule": "polynomial",  # polynomial (Zhu & Gupta: fast, then slow) | oneshot (all at the first step)
    "structured": False,  # prune whole output channels (filters/units) instead of single weights
    "qat": False,  # quantization-aware training before the int8 export
    "epochs": 4,  # fine-tuning epochs of each step (pruning, QAT); 2 left 3 points of 80 % pruning unrecovered
    "learning_rate": None,  # fine-tuning peak rate, cosine to 0 (None: pruning at the training rate, QAT at 1/10)
}
SCHEDULES = ("polynomial", "oneshot")
MAX_SPARSITY = 0.99
MAX_EPOCHS = 100


def value_problem(key: str, value: Any) -> str | None:
    """Why `value` is not allowed for `key` (None when it is)."""
    if key == "sparsity":
        ok = _number(value) and 0.0 <= value <= MAX_SPARSITY
        return None if ok else f"must be a number in [0, {MAX_SPARSITY}], not {value!r}"
    if key == "schedule":
        return None if value in SCHEDULES else f"must be one of {', '.join(SCHEDULES)}, not {value!r}"
    if key in ("structured", "qat"):
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if key == "epochs":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_EPOCHS
        return None if ok else f"must be an integer in [1, {MAX_EPOCHS}], not {value!r}"
    if key == "learning_rate":
        return None if value is None or (_number(value) and value > 0) else f"must be positive, not {value!r}"
    return f"unknown key (allowed: {', '.join(COMPRESSION_DEFAULTS)})"


def check_compression(items: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path, problem) for every parsed node of the section whose values the key does not allow."""
    return check_flat_section("compression", items, COMPRESSION_DEFAULTS, value_problem, int_keys=("epochs",))


def compression_settings(config: dict | None) -> dict[str, Any]:
    """Defaults overlaid with the sampled values, checked (a configuration built in Python too)."""
    return flat_settings("compression", COMPRESSION_DEFAULTS, value_problem, config)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
