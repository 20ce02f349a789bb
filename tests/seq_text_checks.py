"""Checks shared by the text / sequence / table block and space tests, and their tiny data sets.

`check_round_trip`: one real training step changes the weights, the `.keras` file reloads (safe
mode) with identical predictions. `tflite_convert` / `tflite_predict`: the converter and the LiteRT
interpreter a phone uses, for models with one input or one input per table column.
"""

import numpy as np

TEXT_SELECT_OPS = ("RaggedTensorToTensor", "StaticRegexReplace", "StringLower", "StringSplitV2")


def text_data(n=48, seed=0):
    """Made-up reviews: the label is carried by a few sentiment words among filler."""
    from automl.data import make_dataset

    rng = np.random.default_rng(seed)
    words = {"pos": ["good", "great", "lovely", "fine"], "neg": ["bad", "awful", "poor", "dull"]}
    labels = np.array(["pos", "neg"] * (n // 2))
    texts = [
        " ".join([*rng.choice(words[lab], 2), *rng.choice(["the", "film", "plot", "a", "cast"], 3)]).capitalize() + "!"
        for lab in labels
    ]
    return make_dataset(texts, labels, validation_split=0.25, seed=seed)


def sequences(n=48, seed=0):
    """Variable-length 2-feature sequences (3-9 steps); the class is the sign of the first feature's mean."""
    rng = np.random.default_rng(seed)
    seqs = [rng.normal(size=(int(rng.integers(3, 10)), 2)).astype("float32") for _ in range(n)]
    labels = np.array([int(s[:, 0].mean() > 0) for s in seqs])
    return seqs, labels


def sequence_data(n=48, seed=0):
    from automl.data import make_dataset

    return make_dataset(*sequences(n, seed), validation_split=0.25, seed=seed)


def table(n=60, seed=0):
    """A DataFrame with numeric, categorical and missing values (numeric NaN, categorical None)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n).round(),
            "city": rng.choice(["paris", "rome", "oslo"], n),
            "income": rng.normal(3.0, 1.0, n),
            "plan": rng.choice(["free", "pro", None], n),
        }
    )
    df.loc[::6, "income"] = np.nan
    y = np.where((df["age"] > 40) ^ (df["city"] == "oslo"), "yes", "no")
    return df, y


def table_data(n=60, seed=0):
    from automl.data import make_dataset

    return make_dataset(*table(n, seed), validation_split=0.25, seed=seed)


def take(x, n):
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]


def check_round_trip(model, data, tmp_path):
    """One training step on real data, then `.keras` save + safe-mode reload with identical predictions."""
    import keras

    from automl.training import loss_and_metrics

    loss, metrics = loss_and_metrics(data.task)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, metrics=metrics)
    before = model.get_weights()
    logs = model.train_on_batch(take(data.x_train, 16), data.y_train[:16], return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the step changed no weight"
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    expected = model.predict(data.x_val, verbose=0)
    np.testing.assert_array_equal(loaded.predict(data.x_val, verbose=0), expected)
    return expected


def tflite_convert(model, select_tf_ops=False) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if select_tf_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    return converter.convert()


def tflite_convert_batch1(model, tmp_path) -> bytes:
    """Convert through a SavedModel whose signature takes one sample: recurrent loops then lower to
    LiteRT built-in ops without unrolling."""
    import tensorflow as tf

    saved = tmp_path / "saved_batch1"
    spec = [tf.TensorSpec((1, *t.shape[1:]), t.dtype) for t in model.inputs]
    model.export(str(saved), format="tf_saved_model", verbose=False, input_signature=spec)
    return tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()


def tflite_predict(content: bytes, x) -> np.ndarray:
    """Run a `.tflite` flatbuffer with the LiteRT interpreter on a batch (dict of columns or one array);
    a file with a fixed batch size of 1 is run sample by sample."""
    from ai_edge_litert.interpreter import Interpreter

    signature = Interpreter(model_content=content).get_signature_runner()  # names -> tensor indices
    inputs, (output,) = signature.get_input_details(), signature.get_output_details().values()
    if all(d["shape_signature"][0] == 1 for d in inputs.values()) and len(_rows(x)) > 1:
        return np.concatenate([tflite_predict(content, _rows(x, i)) for i in range(len(_rows(x)))])
    interpreter = Interpreter(model_content=content)  # a runner holds tensor views that block resizing
    feed = x if isinstance(x, dict) else {next(iter(inputs)): x}
    assert set(feed) == set(inputs), f"TFLite inputs {sorted(inputs)} != {sorted(feed)}"
    for name, detail in inputs.items():
        interpreter.resize_tensor_input(detail["index"], np.shape(feed[name]))
    interpreter.allocate_tensors()
    for name, detail in inputs.items():
        value = np.asarray(feed[name])
        value = value.astype(str).astype(bytes) if value.dtype.kind in "OU" else value.astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    return interpreter.get_tensor(output["index"])


def _rows(x, i=None):
    if i is None:
        return next(iter(x.values())) if isinstance(x, dict) else x
    return {k: v[i : i + 1] for k, v in x.items()} if isinstance(x, dict) else x[i : i + 1]


def reviews(n=48, seed=0):
    """Raw made-up reviews and their labels (see `text_data`)."""
    data = text_data(n, seed)
    return [*data.x_train, *data.x_val], [data.class_names[i] for i in (*data.y_train, *data.y_val)]
