"""The `pretrain:` section of a space: self-supervised pretraining of the model on unlabeled samples.

A trial whose configuration has `method` other than `none` (and a search given unlabeled data)
starts from weights pretrained on the unlabeled samples (see automl/pretraining.py), then
fine-tunes them with the labels, `frozen` of its layers (a share, input side first) kept fixed.
The section is searched only when a search is given unlabeled data; without it the section is
left out, so the space samples and fingerprints as it would without it. Keys and values are
checked when the space is loaded: a bad value is one error naming the key, before any training.
"""

from __future__ import annotations

from typing import Any

from .params import check_flat_section, flat_settings

METHODS = ("none", "simclr")  # simclr: contrastive views (images: crops, zoom, rotation; series: jitter, shift)
PRETRAIN_DEFAULTS: dict[str, Any] = {
    "method": "none",
    "epochs": 15,  # passes over the unlabeled samples
    "temperature": 0.2,  # NT-Xent softmax temperature (SimCLR's best on small batches: 0.1-0.5)
    "projection": 64,  # the projection head's output width (the head is dropped after pretraining)
    "batch_size": 256,  # contrastive batches: every other sample of the batch is a negative
    "learning_rate": 0.001,
    "frozen": 0.0,  # share of the pretrained layers (input side first) not fine-tuned
}
# the keys that change the pretrained weights: trials that agree on them (and on the architecture) share one
PRETRAINING_KEYS = ("method", "epochs", "temperature", "projection", "batch_size", "learning_rate")
INT_KEYS = ("epochs", "projection", "batch_size")
LIMITS = {"epochs": (1, 1000), "projection": (2, 4096), "batch_size": (4, 65536)}


def value_problem(key: str, value: Any) -> str | None:
    """Why `value` is not allowed for `key` (None when it is)."""
    if key == "method":
        return None if value in METHODS else f"must be one of {', '.join(METHODS)}, not {value!r}"
    if key in INT_KEYS:
        low, high = LIMITS[key]
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"must be an integer in [{low}, {high}], not {value!r}"
    if key in ("temperature", "learning_rate"):
        return None if _number(value) and value > 0 else f"must be a positive number, not {value!r}"
    if key == "frozen":
        return None if _number(value) and 0.0 <= value <= 1.0 else f"must be a number in [0, 1], not {value!r}"
    return f"unknown key (allowed: {', '.join(PRETRAIN_DEFAULTS)})"


def check_pretrain(items: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path, problem) for every parsed node of the section whose values the key does not allow."""
    return check_flat_section("pretrain", items, PRETRAIN_DEFAULTS, value_problem, int_keys=INT_KEYS)


def pretrain_settings(config: dict | None) -> dict[str, Any]:
    """Defaults overlaid with the sampled values, checked (a configuration built in Python too)."""
    return flat_settings("pretrain", PRETRAIN_DEFAULTS, value_problem, config)


def pretraining_wanted(config: dict | None) -> bool:
    return pretrain_settings(config)["method"] != "none"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
