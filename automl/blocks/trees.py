"""Gradient-boosted trees inside the Keras model, as the starting point of a table network.

On tables a default scikit-learn HistGradientBoosting beats a searched MLP often enough (the suite's
wine_quality, california_housing) that a table model without trees leaves points behind. With
`trees: boosted` the tabular block fits one on the training split (early-stopped on the validation
split) and the model's head becomes `trees' raw scores + a zero-initialised dense head`: training
starts from the trees' predictions and the network learns what they miss. The result stays one
Keras model (saved, loaded with safe_mode, converted to TFLite) because `BoostedTrees` walks all
trees at once with gathers, `depth` steps, no custom ops.

Measured (bench/RESULTS.md "Suite"): the trees fit the training split closely, so the head moves
their predictions little; what lifts the tables is the trees themselves and ensembles that mix
trees with networks.
"""

from __future__ import annotations

import hashlib

import keras
import numpy as np
from keras import layers, ops

from .registry import PRIOR_LAYERS, VALIDATION_IN_TRAINING

TREES = ("none", "boosted")
DEFAULT_ROUNDS = 100  # scikit-learn's max_iter, for a refit that has no early-stopped fit to copy
ABSENT_CLASS_SCORE = -30.0  # logit of a class the training split lacks (its trees never saw it)
SCORES = "scores"  # data.extra["boosted_trees"][(SCORES, digest)]: the trees' outputs on training, validation


def fit_boosted_trees(
    x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, data, leaves: int, rate: float,
    rounds: int | None = None,
):  # fmt: skip
    """A HistGradientBoosting model on float32 inputs (as the Keras layer sees them), stopped when
    10 rounds bring nothing on the validation split; exactly `rounds` rounds when given (a refit on
    training + validation rows, where validation can no longer tell when to stop)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = HistGradientBoostingClassifier if data.task == "classification" else HistGradientBoostingRegressor
    as32 = lambda a: np.asarray(a, "float32").astype("float64")  # noqa: E731
    settings = {"learning_rate": rate, "max_leaf_nodes": leaves, "random_state": 0}
    if rounds is not None:
        return kind(max_iter=rounds, early_stopping=False, **settings).fit(as32(x), y)
    model = kind(max_iter=300, early_stopping=True, n_iter_no_change=10, **settings)
    return model.fit(as32(x), y, X_val=as32(x_val), y_val=y_val)


def tree_arrays(model, num_outputs: int) -> dict[str, np.ndarray]:
    """The fitted ensemble as one int32 table of nodes (every tree's nodes after the previous
    tree's; float fields as their bits, which no TFLite quantization touches), the trees' roots,
    which output each tree of an iteration scores, and the baseline scores."""
    trees = [tree.nodes for iteration in model._predictors for tree in iteration]
    offsets = np.cumsum([0] + [len(t) for t in trees])
    nodes = np.concatenate(trees)
    own = np.arange(len(nodes))
    shift = np.repeat(offsets[:-1], [len(t) for t in trees])
    leaf = nodes["is_leaf"].astype(bool)
    columns = _output_columns(model, len(model._predictors[0]))
    source = np.zeros(num_outputs, "int32")  # output k <- tree slot source[k] - 1 of an iteration; 0: none
    source[columns] = np.arange(1, len(columns) + 1)
    baseline = np.zeros(num_outputs, "float32")
    if hasattr(model, "classes_"):
        baseline[:] = ABSENT_CLASS_SCORE
        baseline[np.asarray(model.classes_, int)] = 0.0
    baseline[columns] = np.asarray(model._baseline_prediction, "float32").ravel()
    bits = lambda a: np.asarray(a, "float32").view("int32")  # noqa: E731
    table = np.stack(
        [
            np.where(leaf, 0, nodes["feature_idx"]),
            np.where(leaf, own, nodes["left"] + shift),
            np.where(leaf, own, nodes["right"] + shift),
            nodes["missing_go_to_left"].astype(bool) & ~leaf,
            bits([_at_most(t) for t in nodes["num_threshold"]]),
            bits(np.where(leaf, nodes["value"], 0.0)),
        ],
        axis=1,
    ).astype("int32")
    return {
        "nodes": table,
        "roots": offsets[:-1].astype("int32"),
        "source": source,
        "baseline": baseline,
        "depth": np.array(int(nodes["depth"].max())),
        "per_iteration": np.array(len(model._predictors[0])),
    }


def raw_scores(model, x: np.ndarray, num_outputs: int) -> np.ndarray:
    """What `BoostedTrees` outputs on `x`, computed by scikit-learn's compiled, threaded walk (up to
    float32 rounding of the sum): a feature-cache miss 3.6-7.9x faster than with the Keras layer's
    walk (bench/trees_walk.py)."""
    x = np.asarray(x, "float32").astype("float64")
    if not hasattr(model, "classes_"):
        return model.predict(x).astype("float32")[:, None]  # squared error: the raw score is the value
    scores = np.full((len(x), num_outputs), ABSENT_CLASS_SCORE, "float32")
    raw, classes = model.decision_function(x), np.asarray(model.classes_, int)
    if raw.ndim == 1:  # binary: the second class's logit, the first's stays 0
        scores[:, classes[0]], scores[:, classes[1]] = 0.0, raw
    else:
        scores[:, classes] = raw
    return scores


def known_scores(data, layer) -> tuple[np.ndarray, np.ndarray] | None:
    """The trees' outputs on `data`'s training and validation rows when scikit-learn computed them
    at fit time (the feature cache then need not walk the trees in Keras); None otherwise."""
    scores = data.extra.get("boosted_trees", {}).get((SCORES, getattr(layer, "digest", "")))
    if scores is None or (len(scores[0]), len(scores[1])) != (len(data.y_train), len(data.y_val)):
        return None  # e.g. a refit's data, whose training rows include the validation rows
    return scores


def _digest(arrays: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(arrays["nodes"].tobytes() + arrays["baseline"].tobytes()).hexdigest()[:16]


def _output_columns(model, per_iteration: int) -> np.ndarray:
    """Which output each of an iteration's trees scores: the class (binary: the second class, the
    first keeps score 0), or the single regression output."""
    if not hasattr(model, "classes_"):
        return np.zeros(1, int)
    classes = np.asarray(model.classes_, int)
    return classes[1:] if per_iteration == 1 and len(classes) == 2 else classes[:per_iteration]


def _at_most(threshold: float) -> np.float32:
    """The largest float32 <= the float64 threshold, so `x <= t` decides as scikit-learn's does for
    every float32 x (a threshold halfway between two float32 values would otherwise round up)."""
    t = np.float32(threshold)
    return np.nextafter(t, np.float32(-np.inf)) if float(t) > threshold else t


@keras.saving.register_keras_serializable(package="automl")
class BoostedTrees(layers.Layer):
    """Raw scores (logits, or the regression value) of a tree ensemble: every tree walked from its
    root `depth` steps at once (a leaf points to itself); NaN follows each node's missing side.
    TensorFlow only (bitcasts): the node table stays int32, so dynamic-range int8 export keeps
    thresholds and leaf values exact."""

    KEYS = ("nodes", "roots", "source", "baseline")

    def __init__(
        self, nodes: int, trees: int, depth: int, outputs: int, per_iteration: int, digest: str = "", **kwargs
    ):
        super().__init__(trainable=False, **{k: v for k, v in kwargs.items() if k != "trainable"})
        self.nodes, self.trees, self.depth, self.outputs = int(nodes), int(trees), int(depth), int(outputs)
        self.per_iteration = int(per_iteration)
        self.digest = digest  # of the node table: tells apart trees of equal sizes (the feature cache's key)

    def build(self, input_shape):
        shapes = {"nodes": (self.nodes, 6), "roots": (self.trees,), "source": (self.outputs,)}
        for key in self.KEYS:
            weight = self.add_weight(
                shape=shapes.get(key, (self.outputs,)),
                dtype="float32" if key == "baseline" else "int32",
                initializer="zeros",
                trainable=False,
                name=key,
            )
            setattr(self, f"_{key}", weight)

    def set_trees(self, arrays: dict[str, np.ndarray]) -> BoostedTrees:
        for key in self.KEYS:
            getattr(self, f"_{key}").assign(arrays[key])
        return self

    def call(self, x):
        import tensorflow as tf

        rows = ops.shape(x)[0]
        flat = ops.reshape(x, (-1,))
        row_start = ops.expand_dims(ops.arange(rows, dtype="int32") * ops.shape(x)[1], 1)
        node = ops.cast(ops.zeros_like(x[:, :1]), "int32") + ops.expand_dims(self._roots, 0)
        for _ in range(self.depth):
            fields = ops.take(self._nodes, node, axis=0)  # (rows, trees, 6)
            value = ops.take(flat, row_start + fields[..., 0])
            go_left = ops.where(
                ops.not_equal(value, value),  # NaN (LiteRT has no IsNan op)
                fields[..., 3] > 0,
                ops.less_equal(value, tf.bitcast(fields[..., 4], tf.float32)),
            )
            node = ops.where(go_left, fields[..., 1], fields[..., 2])
        leaf_values = tf.bitcast(ops.take(self._nodes[:, 5], node), tf.float32)  # (rows, trees)
        per_slot = ops.sum(ops.reshape(leaf_values, (-1, self.trees // self.per_iteration, self.per_iteration)), 1)
        padded = ops.concatenate([ops.zeros_like(per_slot[:, :1]), per_slot], axis=1)
        return ops.take(padded, self._source, axis=1) + self._baseline

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.outputs)

    def get_config(self):
        sizes = {"nodes": self.nodes, "trees": self.trees, "depth": self.depth, "outputs": self.outputs}
        return {**super().get_config(), **sizes, "per_iteration": self.per_iteration, "digest": self.digest}


def boosted_trees(model_inputs, tree_inputs, data, leaves: int, rate: float):
    """Trees' raw scores on `tree_inputs` (a numeric tensor computed from `model_inputs`: numbers with
    NaN, categories one-hot). On a cache miss the trees are fit on what the model's own layers make
    of the training and validation rows; fits are cached on the Dataset per setting. A refit
    (validation rows in training) takes the rounds early stopping chose for the same setting in
    this process, else scikit-learn's default 100."""
    outputs = data.num_classes if data.task == "classification" else 1
    cache = data.extra.setdefault("boosted_trees", {})
    key = (leaves, float(rate), int(tree_inputs.shape[-1]), len(data.y_train))
    if key not in cache:
        as_matrix = keras.Model(model_inputs, tree_inputs)
        x, x_val = (as_matrix.predict(split, batch_size=1024, verbose=0) for split in (data.x_train, data.x_val))
        refit = bool(data.extra.get(VALIDATION_IN_TRAINING))
        rounds = cache.get(("rounds", leaves, float(rate)), DEFAULT_ROUNDS) if refit else None
        model = fit_boosted_trees(x, data.y_train, x_val, data.y_val, data, leaves, rate, rounds)
        cache[key] = tree_arrays(model, outputs)
        cache[(SCORES, _digest(cache[key]))] = (raw_scores(model, x, outputs), raw_scores(model, x_val, outputs))
        if not refit:
            cache[("rounds", leaves, float(rate))] = int(model.n_iter_)
    arrays = cache[key]
    sizes = len(arrays["nodes"]), len(arrays["roots"]), int(arrays["depth"]), outputs, int(arrays["per_iteration"])
    digest = _digest(arrays)
    layer = BoostedTrees(*sizes, digest=digest, name=PRIOR_LAYERS[0])
    scores = layer(tree_inputs)
    layer.set_trees(arrays)
    return scores
