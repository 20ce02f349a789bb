"""Fixed preprocessing computed once per search instead of once per batch of every epoch of every trial.

A model takes raw inputs (table columns, strings) so that it is saved and exported whole, but its
first layers are fixed functions of the training data: column standardisation (`NumericColumns`,
`Normalization`), category lookups (`StringLookup`, `IntegerLookup`) and text vectorisation
(`TextVectorization`); for time series also per-series normalisation and ROCKET's random convolutions;
for tables the boosted trees' scores.
Their outputs are the same in every epoch and in every trial that samples the same preprocessing,
so a trial trains the layers after them on arrays computed once, through a sub-model that shares
the full model's weights: the model that is saved, measured and exported is still the raw-input
one, and it computes exactly what was trained. Fewer ops to trace and to run per step: 8% of a
5-epoch trial on bank_marketing and on sms_spam (bench/features.py), more of a short one; half
of a 15-epoch ROCKET trial on ucr_ACSF1. Boosted trees' outputs come from scikit-learn's own
walk at fit time (float32 rounding of the sum aside, what the layer computes). With `isolate=True`
each child process starts with an empty cache.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict

import keras
import numpy as np

from .blocks.trees import BoostedTrees, known_scores

FIXED_LAYERS = (
    "NumericColumns",
    "Normalization",
    "StringLookup",
    "IntegerLookup",
    "TextVectorization",
    "SeriesNormalization",  # blocks/series.py: per-series z-normalisation
    "RandomConvolutions",  # ROCKET's fixed random kernels: the costly part of a rocket model, once per search
    "BoostedTrees",  # blocks/trees.py: trees fit before training, walked once per search instead of every step
)
PLUMBING = ("InputLayer", "Reshape", "Concatenate")  # may sit between the inputs and a fixed layer


class FeatureCache:
    """The fixed layers' outputs on the training and validation inputs, per distinct preprocessing
    (keyed by the fixed part's configuration: the same configuration on the same training split
    gives the same vocabulary and statistics)."""

    def __init__(self, data, max_bytes: int = 256 * 2**20):
        self.data, self.max_bytes = data, max_bytes
        self._entries: OrderedDict[str, tuple] = OrderedDict()
        self.hits = self.misses = 0

    def split(self, model: keras.Model):
        """(trainable part, its training inputs, its validation inputs), or None when the model has
        no fixed preprocessing in front (then it trains on the raw inputs as it is)."""
        cuts = [layer for layer in model.layers if type(layer).__name__ in FIXED_LAYERS]
        if not cuts or type(model).__name__ != "Functional":
            return None  # a subclassed model may train its own way
        tensors = [layer.output for layer in cuts]
        fixed = keras.Model(model.inputs, tensors)
        if any(type(layer).__name__ not in FIXED_LAYERS + PLUMBING for layer in fixed.layers):
            return None  # something else (trainable, random) sits in front of a fixed layer
        try:
            trainable = keras.Model(tensors, model.outputs)
        except ValueError:
            return None  # a raw input also reaches the layers after them (a skip around the preprocessing)
        size = _bytes(tensors, len(self.data.y_train) + len(self.data.y_val))
        if size is None or size > self.max_bytes:
            return None  # e.g. 20k-wide multi-hot text vectors: cheaper to recompute than to hold
        config = {**fixed.get_config(), "name": None}  # the sub-model's own name is a counter
        key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
        else:
            self.misses += 1
            while self._entries and sum(e[2] for e in self._entries.values()) + size > self.max_bytes:
                self._entries.popitem(last=False)  # the least recently used preprocessing goes
            self._entries[key] = (*self._outputs(model.inputs, cuts, tensors), size)
        x_train, x_val, _ = self._entries[key]
        return trainable, x_train, x_val

    def _outputs(self, inputs, cuts, tensors) -> tuple[list, list]:
        """The fixed layers' outputs on the training and validation rows; boosted trees' outputs as
        scikit-learn computed them when it fit the trees (walking them in Keras took 1-3 s a split)."""
        known = [known_scores(self.data, layer) if isinstance(layer, BoostedTrees) else None for layer in cuts]
        rest = [t for t, k in zip(tensors, known) if k is None]
        others = keras.Model(inputs, rest) if rest else None  # inputs the rest does not use are allowed
        computed = [iter(_run(others, x) if others else []) for x in (self.data.x_train, self.data.x_val)]
        train = [k[0] if k is not None else next(computed[0]) for k in known]
        val = [k[1] if k is not None else next(computed[1]) for k in known]
        return train, val


def _bytes(tensors, rows: int) -> int | None:
    """What the cached outputs take for `rows` samples; None when a dimension is not fixed."""
    total = 0
    for t in tensors:
        if any(d is None for d in t.shape[1:]):
            return None
        total += rows * math.prod(t.shape[1:]) * np.dtype(t.dtype).itemsize
    return total


def _run(fixed: keras.Model, x) -> list:
    out = fixed.predict(x, batch_size=1024, verbose=0)
    return list(out) if isinstance(out, (list, tuple)) else [out]
