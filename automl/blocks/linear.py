"""A linear model fitted exactly, inside the Keras model, as the starting point of a text or table network.

On short texts a word 1-2-gram TF-IDF with a logistic regression solved to convergence, its L2
strength chosen on validation, is the practitioner's first try and hard to beat (bench/RESULTS.md
"Suite": sentiment_amazon). A Keras linear head trained by Adam with early stopping is not that
model: it stops at a weaker point of the same family. With `linear: fitted` the `text_ngrams` block
fits the regression with scikit-learn's L-BFGS on what the block's own `TextVectorization` makes of
the training rows, and the model's head becomes `linear scores + a zero-initialised dense head`
(the builder's prior, as for boosted trees): the model starts as the fitted linear model, and
training keeps it unless an epoch beats it on validation (training.py). It stays one Keras model:
a frozen `Dense` layer.

Tables (`linear: fitted` in the tabular block) get the same start on the standardised numbers
(with missing-value flags) and one-hot categories: on small tables a ridge or logistic regression
is the practitioner's first try (scikit-learn's diabetes: test R² 0.33 against 0.17 for
HistGradientBoosting, bench/RESULTS.md).
"""

from __future__ import annotations

import numpy as np
from keras import layers

from .registry import PRIOR_LAYERS, VALIDATION_IN_TRAINING
from .trees import ABSENT_CLASS_SCORE  # logit of a class the training split lacks

LINEAR = ("none", "fitted")
STRENGTHS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # logistic C, or 1 / ridge alpha: chosen on validation
DEFAULT_STRENGTH = 1.0  # scikit-learn's default, for a refit that has no chosen strength to copy
CACHE = "fitted_linear"  # data.extra[CACHE]: fits per (features, training rows), strengths per features


def sparse_rows(vectorize, texts, batch: int = 1024):
    """The vectoriser's outputs on `texts` as one sparse matrix (a dense 20000-column float matrix of
    a few thousand texts would take hundreds of MB)."""
    import scipy.sparse as sp

    chunks = [sp.csr_matrix(np.asarray(vectorize(texts[i : i + batch]))) for i in range(0, len(texts), batch)]
    return sp.vstack(chunks).tocsr() if chunks else sp.csr_matrix((0, 0))


def fit_linear(x, y, x_val, y_val, data, strength: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(kernel, bias, strength) of an L2-regularised logistic regression (classification: logits per
    class) or ridge regression (the target in its units); the strength with the lowest validation
    log loss / squared error, or exactly `strength` when given (a refit, where validation rows are
    training rows)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import log_loss

    classification = data.task == "classification"
    outputs = data.num_classes if classification else 1
    present = np.unique(y).astype(int) if classification else np.zeros(0, int)

    def fit(c: float):
        if not classification:
            return Ridge(alpha=1.0 / c).fit(x, y)
        return LogisticRegression(C=c, max_iter=1000).fit(x, y)

    def val_error(model) -> float:
        if not classification:
            return float(np.mean((model.predict(x_val) - y_val) ** 2))
        proba = np.full((len(y_val), outputs), 1e-15)
        proba[:, model.classes_.astype(int)] = model.predict_proba(x_val)
        proba /= proba.sum(axis=1, keepdims=True)
        return float(log_loss(y_val, proba, labels=np.arange(outputs)))

    if classification and len(present) < 2:  # nothing to tell apart: every row scores its one class
        kernel = np.zeros((x.shape[1], outputs), "float32")
        bias = np.full(outputs, ABSENT_CLASS_SCORE, "float32")
        bias[present] = 0.0
        return kernel, bias, strength or DEFAULT_STRENGTH
    if strength is None:
        fits = {c: fit(c) for c in STRENGTHS}
        strength = min(fits, key=lambda c: (val_error(fits[c]), c))  # ties: the stronger regularisation
        model = fits[strength]
    else:
        model = fit(strength)
    kernel = np.zeros((x.shape[1], outputs), "float32")
    bias = np.zeros(outputs, "float32")
    if not classification:
        kernel[:, 0], bias[0] = model.coef_.ravel(), float(model.intercept_)
        return kernel, bias, strength
    bias[:] = ABSENT_CLASS_SCORE
    classes = model.classes_.astype(int)
    if len(classes) == 2:  # one coefficient row: the second class's logit, the first keeps 0
        bias[classes] = (0.0, float(model.intercept_[0]))
        kernel[:, classes[1]] = model.coef_[0]
    else:
        kernel[:, classes] = model.coef_.T
        bias[classes] = model.intercept_
    return kernel, bias, strength


def fitted_linear(rows, features, data, setting: tuple):
    """The fitted linear model's scores on `features`, the model's own tensor whose values on a
    split's inputs `rows(inputs)` computes as a (sparse or dense) matrix; fits are cached on the
    Dataset per `setting` and training rows. A refit (validation rows in training) takes the
    strength validation chose for the same setting in this process, else scikit-learn's default."""
    cache = data.extra.setdefault(CACHE, {})
    key = (*setting, len(data.y_train))
    if key not in cache:
        x = rows(data.x_train)
        refit = bool(data.extra.get(VALIDATION_IN_TRAINING))
        chosen = cache.get(("strength", *setting), DEFAULT_STRENGTH) if refit else None
        x_val = None if refit else rows(data.x_val)  # a refit chooses nothing
        kernel, bias, strength = fit_linear(x, data.y_train, x_val, data.y_val, data, chosen)
        cache[key] = (kernel, bias)
        if not refit:
            cache[("strength", *setting)] = strength
    kernel, bias = cache[key]
    layer = layers.Dense(kernel.shape[1], trainable=False, name=PRIOR_LAYERS[1])
    scores = layer(features)
    layer.set_weights([kernel, bias])
    return scores
