"""Tables: per-column preprocessing learnt from the training split, so the model takes raw columns.

Numeric columns are standardised, a missing value (NaN) becomes the column mean plus a 1 in an
indicator feature (for columns with gaps in training); categorical columns go through a
`StringLookup` on their training vocabulary (unseen values share one out-of-vocabulary slot, a
missing value `""` is its own category when training had any) and then one-hot or a learnt
embedding; a text column (sentences, such as a description beside the numbers) becomes the
TF-IDF weights of its word 1-2-grams. A plain numeric matrix is just standardised. The
standardised numbers may then be encoded further (`numeric`: piecewise-linear or periodic
embeddings, see `numeric.py`). With
`trees: boosted` the block also returns gradient-boosted trees' scores on the raw columns (numbers
with NaN, categories one-hot), which the builder adds to the head's (see `trees.py`); with
`linear: fitted`, instead, the scores of a ridge or logistic regression fitted exactly on the
standardised numbers (and missing-value flags) and one-hot categories (see `linear.py`).
"""

import keras
import numpy as np
from keras import layers, ops

from ..names import input_names
from .linear import LINEAR, fitted_linear
from .numeric import encode_numeric
from .registry import register
from .text import adaptable
from .trees import TREES, boosted_trees

ENCODINGS = ("one_hot", "embedding")


@keras.saving.register_keras_serializable(package="automl")
class NumericColumns(layers.Layer):
    """(x - mean) / std per column; NaN -> 0 (the mean) plus, for `indicators`, a missing-flag feature."""

    def __init__(self, mean, std, indicators=(), **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std, self.indicators = list(map(float, mean)), list(map(float, std)), list(indicators)

    def call(self, x):
        missing = ops.not_equal(x, x)  # NaN != NaN (LiteRT has no IsNan op)
        z = (x - ops.convert_to_tensor(self.mean, x.dtype)) / ops.convert_to_tensor(self.std, x.dtype)
        z = ops.where(missing, ops.zeros_like(z), z)
        if not self.indicators:
            return z
        flags = ops.cast(ops.take(missing, ops.convert_to_tensor(self.indicators, "int32"), axis=1), x.dtype)
        return ops.concatenate([z, flags], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] + len(self.indicators))

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std, "indicators": self.indicators}


@register("tabular", input_for="tabular")
def tabular(
    x,
    data,
    categorical: str = "one_hot",
    embedding_dim: int = 8,
    max_categories: int = 64,
    numeric: str = "standard",
    numeric_bins: int = 16,
    numeric_frequencies: int = 16,
    numeric_sigma: float = 0.1,
    numeric_dim: int = 16,
    trees: str = "none",
    trees_leaves: int = 31,
    trees_learning_rate: float = 0.1,
    linear: str = "none",
    text_tokens: int = 2000,
):
    """Raw table input -> one feature vector. `categorical` encodes text columns as `one_hot` or an
    `embedding` of `embedding_dim` (capped by the vocabulary size); only the `max_categories`
    most frequent values of a column get their own slot. `numeric` keeps the standardised numbers
    (`standard`) or encodes each as `piecewise_linear` over `numeric_bins` training quantiles or
    `periodic` (`numeric_frequencies` sin/cos pairs at scale `numeric_sigma` -> `numeric_dim` values).
    `trees: boosted` returns (features, scores of boosted trees with `trees_leaves` leaves per tree
    learnt at `trees_learning_rate`); `linear: fitted` returns (features, scores of a linear model
    fitted on the training rows, its L2 strength chosen on validation). A text column (sentences,
    data.py) becomes TF-IDF weights of its `text_tokens` most frequent word 1-2-grams."""
    if data is None or data.kind != "tabular":
        raise ValueError(f"the tabular block takes raw table columns; this data is {getattr(data, 'kind', None)} input")
    if categorical not in ENCODINGS:
        raise ValueError(f"tabular categorical must be one of {ENCODINGS}, not {categorical!r}")
    if trees not in TREES:
        raise ValueError(f"tabular trees must be one of {TREES}, not {trees!r}")
    if linear not in LINEAR:
        raise ValueError(f"tabular linear must be one of {LINEAR}, not {linear!r}")
    if trees != "none" and linear != "none":
        raise ValueError("tabular trees and linear are two starting points for the head: set one of them")
    tree_settings = (trees_leaves, trees_learning_rate) if trees == "boosted" else None
    encoding = (numeric, numeric_bins, numeric_frequencies, numeric_sigma, numeric_dim)
    if data.columns is None:
        z = layers.Normalization(mean=data.feature_mean, variance=data.feature_var, name="normalize")(x)
        scale = np.maximum(np.sqrt(data.feature_var), keras.config.epsilon())  # as Normalization divides
        features = encode_numeric(z, list(((data.x_train - data.feature_mean) / scale).T), *encoding)
        if linear == "fitted":
            return features, _fitted_linear(x, z, data)
        if tree_settings is None:
            return features
        return features, boosted_trees(x, x, data, *tree_settings)
    parts, names = [], input_names([c.name for c in data.columns])  # inputs, and the stems of layer names
    raw: list = []  # the trees' input: raw numbers (NaN kept), then each category one-hot
    plain: list = []  # the linear model's input: standardised numbers (and missing flags), categories one-hot
    numbers = [c for c in data.columns if c.kind == "numeric"]
    if numbers:
        cols = [layers.Reshape((1,), name=f"{names[c.name]}_column")(x[names[c.name]]) for c in numbers]
        joined = layers.Concatenate(name="numeric_columns")(cols) if len(cols) > 1 else cols[0]
        z = NumericColumns(
            [c.mean for c in numbers],
            [c.std for c in numbers],
            [i for i, c in enumerate(numbers) if c.missing],
            name="standardize",
        )(joined)
        standardized = [(np.asarray(data.x_train[names[c.name]], "float64") - c.mean) / c.std for c in numbers]
        parts.append(encode_numeric(z, standardized, *encoding))
        raw.append(joined)
        plain.append(z)
    for c in data.columns:
        if c.kind != "categorical":
            continue
        vocabulary = c.vocabulary[: max(1, max_categories)]
        one_hot = None
        if categorical == "one_hot" or tree_settings is not None or linear == "fitted":
            one_hot = layers.StringLookup(
                vocabulary=vocabulary, output_mode="one_hot", name=f"{names[c.name]}_one_hot"
            )(x[names[c.name]])
            raw.append(one_hot)
            plain.append(one_hot)
        if categorical == "one_hot":
            parts.append(one_hot)
        else:
            ids = layers.StringLookup(vocabulary=vocabulary, name=f"{names[c.name]}_lookup")(x[names[c.name]])
            size = len(vocabulary) + 1
            parts.append(layers.Embedding(size, min(embedding_dim, size), name=f"{names[c.name]}_embedding")(ids))
    for c in data.columns:
        if c.kind != "text":
            continue
        vectorize = layers.TextVectorization(
            max(2, text_tokens), ngrams=2, output_mode="tf_idf", name=f"{names[c.name]}_ngrams"
        )
        vectorize.adapt(adaptable(data.x_train[names[c.name]]), batch_size=1024)
        bag = vectorize(x[names[c.name]])
        parts.append(bag)
        plain.append(bag)  # the trees take numbers and categories only
    features = layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
    if linear == "fitted":
        return features, _fitted_linear(
            x, layers.Concatenate(name="linear_inputs")(plain) if len(plain) > 1 else plain[0], data
        )
    if tree_settings is None:
        return features
    tree_inputs = layers.Concatenate(name="tree_inputs")(raw) if len(raw) > 1 else raw[0]
    return features, boosted_trees(x, tree_inputs, data, *tree_settings)


def _fitted_linear(model_inputs, linear_inputs, data):
    """Scores of a linear model of `linear_inputs` (computed from `model_inputs` by the model's own
    layers), fitted exactly on the training rows (linear.py). The sub-model that computes those
    inputs is built only when the fit is not cached yet (most trials reuse the search's fit)."""
    rows = lambda split: keras.Model(model_inputs, linear_inputs).predict(split, batch_size=1024, verbose=0)  # noqa: E731
    return fitted_linear(rows, linear_inputs, data, ("tabular", int(linear_inputs.shape[-1])))
