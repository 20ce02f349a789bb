"""Text: raw strings -> token ids -> vectors, inside the model so a raw-string model is exported whole."""

import re

import numpy as np
from keras import layers

from .linear import LINEAR, fitted_linear, sparse_rows
from .registry import register


@register("text", input_for="text")
def text(x, data, max_tokens: int = 10000, sequence_length: int = 64, embed_dim: int = 64):
    """`TextVectorization` (lower-case, strip punctuation, split on whitespace) then `Embedding`.

    The vocabulary is the `max_tokens - 2` most frequent training-split tokens (ids 0 and 1 are
    padding and out-of-vocabulary); texts are cut or padded to `sequence_length` tokens, and the
    padding is masked for the layers that follow (pooling, attention, recurrent layers).
    """
    if data is None or data.kind != "text":
        raise ValueError(f"the text block takes raw strings; this data is {getattr(data, 'kind', None)} input")
    if max_tokens < 3 or sequence_length < 1 or embed_dim < 1:
        raise ValueError(
            f"text block needs max_tokens >= 3, sequence_length >= 1 and embed_dim >= 1 "
            f"(got {max_tokens}, {sequence_length}, {embed_dim})"
        )
    vocabulary = training_vocabulary(data)[: max_tokens - 2]
    vectorize = layers.TextVectorization(
        vocabulary=vocabulary, output_sequence_length=sequence_length, name="vectorize"
    )
    tokens = vectorize(x)
    return layers.Embedding(vectorize.vocabulary_size(), embed_dim, mask_zero=True, name="token_embedding")(tokens)


def training_vocabulary(data) -> list[str]:
    """Every token of the training texts, most frequent first; computed once per data set."""
    if "text_vocabulary" not in data.extra:
        adapter = layers.TextVectorization()
        adapter.adapt(adaptable(data.x_train), batch_size=1024)
        data.extra["text_vocabulary"] = [str(t) for t in adapter.get_vocabulary()[2:]]  # drop '' and [UNK]
        if not data.extra["text_vocabulary"]:
            raise ValueError("the training texts hold no tokens")
    return data.extra["text_vocabulary"]


# what Python's str.splitlines() breaks lines at, beyond spaces: Keras saves a vocabulary as one
# term per line, so a term holding one of these (a character n-gram of a text with U+0085, say)
# reloads as two or as a duplicate, and the saved model no longer loads
LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def adaptable(texts) -> np.ndarray:
    """The training texts a vocabulary is learnt from, line breaks made spaces (see LINE_BREAKS);
    at prediction time such characters just fall outside the vocabulary."""
    return np.asarray([LINE_BREAKS.sub(" ", str(t)) for t in texts], dtype=object)


NGRAM_SPLITS = ("words", "characters")
NGRAM_OUTPUTS = ("multi_hot", "tf_idf")


@register("text_ngrams", input_for="text")
def text_ngrams(
    x, data, split: str = "words", ngrams: int = 2, max_tokens: int = 20000, output: str = "multi_hot",
    linear: str = "none",
):  # fmt: skip
    """Bag of n-grams: each text becomes one vector over the `max_tokens` most frequent 1..`ngrams`-grams
    of words or of characters (`multi_hot` presence or `tf_idf` weights), learnt from the training split.

    Why beside the sequence block: on short, noisy texts (messages, reviews, tickets) a bag of
    character n-grams is a strong, fast model (spelling variants, numbers and symbols count), and it
    trains in seconds. The output is a vector, so sequence blocks (conv1d, lstm) cannot follow it.
    `linear: fitted` also returns the scores of a linear model of the vector fitted exactly on the
    training rows (linear.py), which the builder adds to the head's.
    """
    if data is None or data.kind != "text":
        raise ValueError(f"the text_ngrams block takes raw strings; this data is {getattr(data, 'kind', None)} input")
    if split not in NGRAM_SPLITS:
        raise ValueError(f"text_ngrams split must be one of {NGRAM_SPLITS}, not {split!r}")
    if output not in NGRAM_OUTPUTS:
        raise ValueError(f"text_ngrams output must be one of {NGRAM_OUTPUTS}, not {output!r}")
    if linear not in LINEAR:
        raise ValueError(f"text_ngrams linear must be one of {LINEAR}, not {linear!r}")
    if ngrams < 1 or max_tokens < 2:
        raise ValueError(f"text_ngrams needs ngrams >= 1 and max_tokens >= 2 (got {ngrams}, {max_tokens})")
    characters = split == "characters"
    vectorize = layers.TextVectorization(
        max_tokens,
        standardize="lower" if characters else "lower_and_strip_punctuation",
        split="character" if characters else "whitespace",
        ngrams=ngrams,
        output_mode=output,
        name="ngrams",
    )
    vectorize.adapt(adaptable(data.x_train), batch_size=1024)
    if vectorize.vocabulary_size() < 2:
        raise ValueError("the training texts hold no tokens")
    features = vectorize(x)
    if linear == "none":
        return features
    rows = lambda texts: sparse_rows(vectorize, adaptable(texts))  # noqa: E731
    return features, fitted_linear(rows, features, data, ("text", split, ngrams, max_tokens, output))
