"""Text: raw strings -> token ids -> vectors, inside the model so a raw-string model is exported whole."""
import numpy as np
from keras import layers

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
        raise ValueError(f"text block needs max_tokens >= 3, sequence_length >= 1 and embed_dim >= 1 "
                         f"(got {max_tokens}, {sequence_length}, {embed_dim})")
    vocabulary = training_vocabulary(data)[:max_tokens - 2]
    vectorize = layers.TextVectorization(vocabulary=vocabulary, output_sequence_length=sequence_length,
                                         name="vectorize")
    tokens = vectorize(x)
    return layers.Embedding(vectorize.vocabulary_size(), embed_dim, mask_zero=True, name="token_embedding")(tokens)


def training_vocabulary(data) -> list[str]:
    """Every token of the training texts, most frequent first; computed once per data set."""
    if "text_vocabulary" not in data.extra:
        adapter = layers.TextVectorization()
        adapter.adapt(np.asarray(data.x_train, dtype=object), batch_size=1024)
        data.extra["text_vocabulary"] = [str(t) for t in adapter.get_vocabulary()[2:]]  # drop '' and [UNK]
        if not data.extra["text_vocabulary"]:
            raise ValueError("the training texts hold no tokens")
    return data.extra["text_vocabulary"]
