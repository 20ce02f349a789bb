"""Loading a search's saved `.keras` files in any process.

A trial's model names automl's own layers (`NumericColumns`, `BoostedTrees`...), metrics and
pretraining layers; Keras finds them only once their modules have registered them, which a fresh
process (`automl export`, `automl report`, a notebook) has not done. Every load goes through here."""

from __future__ import annotations

from pathlib import Path


def load_model(path: str | Path, **kwargs):
    """`keras.saving.load_model(path, safe_mode=True)` with automl's custom objects registered."""
    import keras

    from . import blocks, metrics, pretrain  # noqa: F401 - registration side effects

    return keras.saving.load_model(path, safe_mode=True, **kwargs)
