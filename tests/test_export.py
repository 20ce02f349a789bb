"""Export: real tiny Keras models (dense, conv, LSTM, text) converted by the real TFLite converter
and run by the LiteRT interpreter; searches on real Optuna/MLflow stores; the CLI as a subprocess."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from automl.data import load_data
from automl.export import (
    FLOAT32_TOLERANCE,
    TFLITE_VARIANTS,
    ExportError,
    TFLiteRunner,
    export_model,
    parse_formats,
)

FAST = {"latency_runs": 10, "batch_size": 16}


def mlp(data, units=(128, 64)):
    inputs = keras.Input(data.input_shape)
    x = keras.layers.Normalization(mean=data.feature_mean, variance=data.feature_var)(inputs)
    for u in units:
        x = keras.layers.Dense(u, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(data.num_classes, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def dense():
    """An MLP (~12k weights) trained on scikit-learn's bundled breast-cancer table."""
    keras.utils.set_random_seed(0)
    data = load_data("breast_cancer", seed=0)
    model = mlp(data)
    model.fit(data.x_train, data.y_train, epochs=5, batch_size=32, verbose=0)
    return model, data


def test_dense_model_every_variant_is_written_and_measured(dense, tmp_path):
    model, data = dense
    report = export_model(model, tmp_path, data=data, **FAST)
    v = report.variants
    assert list(v) == ["keras", "saved_model", *TFLITE_VARIANTS]
    assert all(row["status"] == "ok" for row in v.values()), {k: r["reason"] for k, r in v.items()}
    for _name, row in v.items():
        assert (tmp_path / row["file"]).exists()
        assert row["latency_p95_ms"] >= row["latency_p50_ms"] > 0 and row["throughput_per_s"] > 0
    # float32 TFLite is the Keras model: same classes, outputs within the stated tolerance
    assert v["float32"]["max_abs_diff"] <= FLOAT32_TOLERANCE and v["float32"]["agreement"] == 1.0
    assert v["float32"]["accuracy"] == v["keras"]["accuracy"] > 0.85
    # the quantized files really hold 16- and 8-bit tensors, and are that much smaller
    assert v["float16"]["tensor_types"].get("float16", 0) >= 3
    assert v["dynamic_int8"]["tensor_types"].get("int8", 0) >= 2  # the two big kernels (>= 1024 weights)
    assert v["int8"]["tensor_types"].get("int8", 0) > v["int8"]["tensor_types"].get("float32", 0)
    assert v["int8"]["input_dtype"] == "float32"  # int8 inside, float at the edges by default
    assert v["int8"]["size_bytes"] <= 0.45 * v["float32"]["size_bytes"]  # 12k weights: headers weigh in
    assert v["float16"]["size_bytes"] <= 0.6 * v["float32"]["size_bytes"]
    assert v["dynamic_int8"]["size_bytes"] <= 0.5 * v["float32"]["size_bytes"]
    assert abs(v["dynamic_int8"]["accuracy"] - v["float32"]["accuracy"]) <= 0.03
    # full-integer int8 quantizes the raw columns (areas in the thousands beside ratios below 0.1) with one
    # scale: the report must show that loss, explain it and not recommend the file
    assert v["int8"]["accuracy"] < v["float32"]["accuracy"] - 0.05 and "one scale per tensor" in v["int8"]["reason"]
    assert report.recommended in ("dynamic_int8", "float16", "float32")
    # the report's numbers come from running the files: run one again by hand
    pred = TFLiteRunner(tmp_path / "model_int8.tflite")(data.x_val)
    assert np.mean(pred.argmax(1) == data.y_val) == pytest.approx(v["int8"]["accuracy"])
    saved = json.loads((tmp_path / "export_report.json").read_text())
    assert saved["variants"]["int8"]["accuracy"] == v["int8"]["accuracy"]
    md = (tmp_path / "REPORT.md").read_text()
    assert "model_int8.tflite" in md and f"{v['int8']['accuracy']:.4f}" in md


@pytest.fixture(scope="module")
def conv(digits_small):
    """A small CNN trained on 240 of the bundled 8x8 digits."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(digits_small.input_shape)
    x = keras.layers.Rescaling(digits_small.pixel_scale)(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits_small.x_train, digits_small.y_train, epochs=8, verbose=0)
    return model, digits_small


def test_conv_model_exports_every_variant(conv, tmp_path):
    model, data = conv
    report = export_model(model, tmp_path, data=data, formats="tflite", **FAST)
    assert all(report.ok(v) for v in TFLITE_VARIANTS), report.variants
    assert report["float32"]["max_abs_diff"] <= FLOAT32_TOLERANCE and report["float32"]["agreement"] == 1.0
    assert report["int8"]["tensor_types"]["int8"] > 5
    # pixels quantize well: full-integer int8 stays close to float32
    assert report["int8"]["accuracy"] >= report["float32"]["accuracy"] - 0.03 and report["int8"]["agreement"] >= 0.95


def test_int8_io_file_takes_and_returns_int8(conv, tmp_path):
    """Pixels quantize well as int8 inputs (a table with features on very different scales would not)."""
    model, data = conv
    report = export_model(
        model, tmp_path, data=data, formats="float32,int8", int8_io=True, representative_samples=100, **FAST
    )
    row = report["int8"]
    assert row["status"] == "ok" and row["input_dtype"] == "int8" and row["output_dtype"] == "int8"
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tmp_path / "model_int8.tflite"))
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert row["accuracy"] >= report["float32"]["accuracy"] - 0.05 and row["agreement"] >= 0.9


def distillation_loss_by_hand(p_teacher, p_student, labels, temperature, alpha):
    """alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T), per sample, in float64 numpy;
    both softmax outputs softened by dividing their log-probabilities by T."""

    def soften(p):
        z = np.log(np.clip(np.asarray(p, "float64"), 1e-7, 1.0)) / temperature
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    q_teacher, q_student = soften(p_teacher), soften(p_student)
    kl = np.sum(q_teacher * (np.log(q_teacher) - np.log(q_student)), axis=1)
    ce = -np.log(np.asarray(p_student, "float64")[np.arange(len(labels)), labels])
    return alpha * ce + (1 - alpha) * temperature**2 * kl


def test_distillation_loss_is_cross_entropy_plus_scaled_kl_of_softened_outputs():
    from automl.export.distill import distillation_loss

    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.05, 0.9, 0.05]])
    student = np.array([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]], "float32")
    labels = np.array([0, 2, 1])
    z = np.log(teacher) / 2.0  # what distill packs beside the labels: the teacher softened at T = 2
    soft = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y_true = np.concatenate([labels[:, None], soft], axis=1).astype("float32")
    got = np.asarray(distillation_loss(True, temperature=2.0, alpha=0.3)(y_true, student))
    np.testing.assert_allclose(got, distillation_loss_by_hand(teacher, student, labels, 2.0, 0.3), rtol=1e-5)
    # a student that answers as the teacher does pays only the label term
    same = np.asarray(distillation_loss(True, temperature=2.0, alpha=0.3)(y_true, teacher.astype("float32")))
    np.testing.assert_allclose(same, 0.3 * -np.log(teacher[np.arange(3), labels]), rtol=1e-5)


@pytest.fixture(scope="module")
def digits_teacher(digits_small):
    """An MLP (~4.8k weights) trained on 240 digits: well above chance on the held-out 60."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(digits_small.input_shape)
    x = keras.layers.Flatten()(keras.layers.Rescaling(digits_small.pixel_scale)(inputs))
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(digits_small.x_train, digits_small.y_train, epochs=20, verbose=0)
    return model, digits_small


def test_distillation_trains_a_small_student_to_the_teachers_level(digits_teacher):
    """The effect, not the bookkeeping: a 650-weight student taught by the MLP classifies held-out
    digits far above chance and far above itself untrained; its reported validation loss is the loss above."""
    from automl.export.distill import distill

    teacher, data = digits_teacher
    keras.utils.set_random_seed(0)
    inputs = keras.Input(data.input_shape)
    x = keras.layers.Flatten()(keras.layers.Rescaling(data.pixel_scale)(inputs))
    student = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))

    def accuracy(model):
        return float(np.mean(model.predict(data.x_val, verbose=0).argmax(1) == data.y_val))

    untrained, teacher_accuracy = accuracy(student), accuracy(teacher)
    distill(
        teacher,
        student,
        data,
        epochs=15,
        patience=None,  # default temperature 4, alpha 0.1
        training={"learning_rate": 0.01},
    )
    trained = accuracy(student)
    # measured: 0.13 untrained, 0.95 taught, teacher 0.97 (chance: 0.1)
    assert trained >= 0.8 and trained >= untrained + 0.5 and trained >= teacher_accuracy - 0.1, (
        untrained,
        trained,
        teacher_accuracy,
    )
    by_hand = distillation_loss_by_hand(
        teacher.predict(data.x_val, verbose=0), student.predict(data.x_val, verbose=0), data.y_val, 4.0, 0.1
    ).mean()
    assert student.distill_history["val_loss"][-1] == pytest.approx(by_hand, rel=1e-4)


def sequences(n=160, length=8):
    """Random 3-channel sequences; the class says whether channel 0 averages above 0.5."""
    x = np.random.default_rng(0).random((n, length, 3)).astype("float32")
    return x, (x[:, :, 0].mean(1) > 0.5).astype(int)


def test_lstm_with_fixed_length_is_unrolled_and_exports(tmp_path):
    x, y = sequences()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.LSTM(8)(inputs)))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:128], y[:128], epochs=2, verbose=0)
    report = export_model(model, tmp_path, x_eval=x[128:], y_eval=y[128:], x_representative=x[:128], **FAST)
    assert all(report.ok(v) for v in report.variants), {k: r["reason"] for k, r in report.variants.items()}
    assert "recurrent layers unrolled over 8 steps for LiteRT" in report.extra["tflite_notes"]
    assert report["float32"]["max_abs_diff"] <= FLOAT32_TOLERANCE and report["float32"]["agreement"] == 1.0
    assert report["int8"]["tensor_types"]["int8"] > 0


def test_lstm_with_unknown_length_is_reported_unsupported_with_the_reason(tmp_path):
    x, _ = sequences(n=40)
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.LSTM(4)(inputs)))
    report = export_model(model, tmp_path, x_eval=x, x_representative=x, formats="saved_model,float32,int8", **FAST)
    assert report.ok("saved_model") and report["saved_model"]["agreement"] == 1.0
    for v in ("float32", "int8"):
        row = report[v]
        assert row["status"] == "unsupported" and row["file"] is None
        assert "unknown length" in row["reason"] and "LiteRT interpreter cannot run" in row["reason"]
    assert not list(tmp_path.glob("*.tflite"))
    assert "**unsupported**" in (tmp_path / "REPORT.md").read_text()


def test_text_model_exports_from_token_ids_with_its_vocabulary(tmp_path):
    """LiteRT has no string ops for an in-graph TextVectorization: the TFLite files start at the token
    ids and the vocabulary is written beside them; an app tokenizing by that recipe gets Keras' answers."""
    import tensorflow as tf

    texts = np.array(["Good movie!", "great fun", "loved it", "bad film", "awful plot", "hated it"] * 6, dtype=object)
    labels = np.array([1, 1, 1, 0, 0, 0] * 6)
    keras.utils.set_random_seed(0)
    vectorize = keras.layers.TextVectorization(max_tokens=30, output_sequence_length=4)
    vectorize.adapt(texts)
    inputs = keras.Input((), dtype="string")  # one string per sample, as automl's text models take
    x = keras.layers.Embedding(30, 8, mask_zero=True)(vectorize(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.LSTM(4)(x)))
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(tf.constant(texts.astype(str)), labels, epochs=10, verbose=0)
    report = export_model(model, tmp_path, x_eval=texts, y_eval=labels, x_representative=texts, **FAST)
    assert all(report.ok(v) for v in report.variants), {k: r["reason"] for k, r in report.variants.items()}
    assert report["keras"]["accuracy"] == report["saved_model"]["accuracy"] == report["float32"]["accuracy"] == 1.0
    assert report["float32"]["max_abs_diff"] <= FLOAT32_TOLERANCE and report["float32"]["input_dtype"] == "int64"
    notes = " ".join(report.extra["tflite_notes"])
    assert "token ids" in notes and "StringLower" in notes and "unrolled over 4 steps" in notes
    vocabulary = (tmp_path / "vocabulary.txt").read_text().split("\n")[:-1]
    assert vocabulary == vectorize.get_vocabulary() and vocabulary[:2] == ["", "[UNK]"]
    # the app's side: lower-case, strip punctuation, split on spaces, look up, pad to 4
    index = {t: i for i, t in enumerate(vocabulary)}
    ids = [
        [index.get(w, 1) for w in "".join(c for c in t.lower() if c.isalnum() or c.isspace()).split()][:4]
        for t in ["Loved it!", "Awful, bad plot"]
    ]
    ids = np.array([row + [0] * (4 - len(row)) for row in ids])
    by_hand = TFLiteRunner(tmp_path / "model_float32.tflite")(ids)
    keras_out = model.predict(tf.constant(["Loved it!", "Awful, bad plot"]), verbose=0)
    np.testing.assert_allclose(by_hand, keras_out, atol=FLOAT32_TOLERANCE)


def test_bag_of_ngrams_text_model_exports_from_its_ngram_vector(tmp_path):
    """The text_ngrams block: the TFLite file takes the multi-hot n-gram vector; vocabulary.txt and
    text_vectorization.json are the whole recipe an app needs to build that vector."""
    from seq_text_checks import text_data

    from automl.builder import build_model

    data = text_data()
    keras.utils.set_random_seed(0)
    model = build_model({"text": {"block": "text_ngrams", "split": "characters", "ngrams": 2, "max_tokens": 40}}, data)
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(data.x_train, data.y_train, epochs=5, verbose=0)
    qat = {"qat": True, "epochs": 1}  # its twin shares the vectorizer: the files still start after it
    report = export_model(model, tmp_path, data=data, formats="keras,float32,int8", compression=qat, **FAST)
    assert report.ok("float32"), report["float32"]["reason"]
    # full-integer int8 calibrates on the n-gram vectors as the file takes them (floats, not the counts' ints)
    assert report.ok("int8") and report["int8"]["agreement"] >= 0.9, report["int8"]["reason"]
    assert report.ok("qat_int8") and report["qat_int8"]["agreement"] >= 0.9, report["qat_int8"]["reason"]
    assert report["float32"]["max_abs_diff"] <= FLOAT32_TOLERANCE and report["float32"]["input_dtype"] == "float32"
    notes = " ".join(report.extra["tflite_notes"])
    assert "a multi_hot vector (None, 40) over the n-grams of vocabulary.txt" in notes and "StringLower" in notes
    recipe = json.loads((tmp_path / "text_vectorization.json").read_text())
    assert (recipe["split"], recipe["ngrams"], recipe["output_mode"], recipe["standardize"]) == (
        "character",
        2,
        "multi_hot",
        "lower",
    )
    vocabulary = (tmp_path / "vocabulary.txt").read_text().split("\n")[:-1]
    assert len(vocabulary) == 40 and vocabulary[0] == "[UNK]"
    index = {t: i for i, t in enumerate(vocabulary)}

    def by_recipe(text):  # the app's side: lower-case, characters, 1- and 2-grams joined by a space
        chars = list(text.lower())
        vector = np.zeros(len(vocabulary), dtype="float32")
        for gram in chars + [f"{a} {b}" for a, b in itertools.pairwise(chars)]:
            vector[index.get(gram, 0)] = 1.0
        return vector

    samples = ["Lovely cast!", "Dull, awful plot"]
    got = TFLiteRunner(tmp_path / "model_float32.tflite")(np.stack([by_recipe(t) for t in samples]))
    np.testing.assert_allclose(got, model.predict(np.array(samples, dtype=object), verbose=0), atol=FLOAT32_TOLERANCE)

    # TF-IDF: the adapted idf weights are part of the recipe (count of each word x its weight)
    words = build_model(
        {"text": {"block": "text_ngrams", "split": "words", "ngrams": 1, "max_tokens": 12, "output": "tf_idf"}}, data
    )
    export_model(words, tmp_path / "tfidf", data=data, formats="float32", **FAST)
    recipe = json.loads((tmp_path / "tfidf" / "text_vectorization.json").read_text())
    vocabulary = (tmp_path / "tfidf" / "vocabulary.txt").read_text().split("\n")[:-1]
    assert recipe["output_mode"] == "tf_idf" and len(recipe["idf_weights"]) == len(vocabulary) == 12
    text = "Good good film, bad!"
    counts = np.zeros(len(vocabulary))
    for word in ["good", "good", "film", "bad"]:
        counts[vocabulary.index(word) if word in vocabulary else 0] += 1
    vector = np.asarray(words.get_layer("ngrams")(np.array([text], dtype=object)))[0]
    np.testing.assert_allclose(vector, counts * np.array(recipe["idf_weights"]), rtol=1e-5)


def test_a_table_with_awkward_column_names_and_accented_categories_exports_to_tflite(tmp_path):
    """Column names such as "km/h" (Keras refuses '/'), "price ($)" or "größe" (a SavedModel signature
    refuses both) become input names a model and its files take, and a category "grün" reaches a TFLite
    string input as UTF-8: every file is written and agrees with the Keras model. Before, the search's
    every trial failed on "km/h", and the SavedModel and TFLite files failed on the others."""
    import pandas as pd

    from automl.builder import build_model
    from automl.checks import check_dataset
    from automl.data import make_dataset
    from automl.names import input_names

    rng = np.random.default_rng(0)
    n = 120
    table = pd.DataFrame(
        {
            "km/h": rng.normal(50, 10, n),
            "price ($)": rng.normal(size=n),
            "größe": rng.normal(size=n),
            "1st value": rng.normal(size=n),
            "colour/type": rng.choice(["rot", "grün", "blau"], n),
            "unit (€)": 1.0,
        }
    )
    y = np.where(table["größe"] + (table["colour/type"] == "grün") > 0.5, "yes", "no")
    data = make_dataset(table, y, validation_split=0.25, seed=0)
    names = input_names(list(table.columns))
    assert names == {
        "km/h": "km_h",
        "price ($)": "price____",
        "größe": "gro_e",
        "1st value": "1st_value",
        "colour/type": "colour_type",
        "unit (€)": "unit____",
    }
    assert set(data.x_train) == set(names.values())
    constant = check_dataset(data).by_check("constant_column")
    assert [f.columns for f in constant] == [["unit (€)"]]  # people read the column names
    space = {"columns": {"block": "tabular", "categorical": "one_hot"}, "hidden": {"block": "dense", "units": 8}}
    model = build_model(space, data)
    assert sorted(t.name for t in model.inputs) == sorted(names.values())
    report = export_model(model, tmp_path, data=data, formats="keras,saved_model,float32,int8", **FAST)
    v = report.variants
    assert all(row["status"] == "ok" for row in v.values()), {k: r["reason"] for k, r in v.items()}
    assert v["float32"]["max_abs_diff"] <= FLOAT32_TOLERANCE and v["float32"]["agreement"] == 1.0
    assert v["saved_model"]["agreement"] == 1.0


def test_bad_settings_fail_before_anything_is_written(dense, tmp_path):
    model, data = dense
    out = tmp_path / "never"
    with pytest.raises(ExportError, match="unknown export format 'f32'"):
        export_model(model, out, data=data, formats="keras,f32")
    with pytest.raises(ExportError, match=r"x_eval has shape \(5,\) per sample but the model takes \(30,\)"):
        export_model(model, out, x_eval=np.zeros((4, 5)))
    with pytest.raises(ExportError, match="needs held-out inputs"):
        export_model(model, out)
    two = keras.Model(model.inputs, [model.outputs[0], model.outputs[0]])
    with pytest.raises(ExportError, match="one output; this one has 2"):
        export_model(two, out, data=data)
    assert not out.exists()
    assert parse_formats("tflite,keras") == ("keras", *TFLITE_VARIANTS)


def test_int8_without_representative_data_is_skipped_with_the_reason(dense, tmp_path):
    model, data = dense
    report = export_model(model, tmp_path, x_eval=data.x_val, formats="float32,int8", **FAST)
    assert report["int8"]["status"] == "skipped" and "representative" in report["int8"]["reason"]
    assert report.ok("float32") and "accuracy" not in report["float32"]  # no labels: agreement only
    assert report["float32"]["agreement"] == 1.0


# ---------------------------------------------------------------- from a search


@pytest.fixture(scope="module")
def search(digits_small, tmp_path_factory):
    """Two conv trials on real stores: a good one first (keeps its model), a hopeless one second."""
    from automl import Search
    from automl.space import Categorical, Float, Int, SearchSpace

    tmp = tmp_path_factory.mktemp("export-search")
    space = SearchSpace(
        name="tiny",
        architecture={
            "blocks": {
                "repeat": Int(low=1, high=2),
                "each": {
                    "block": "conv",
                    "filters": Int(low=4, high=12),
                    "kernel_size": 3,
                    "pooling": Categorical(choices=["max", "avg"]),
                },
            },
            "pool": {"block": "global_pool", "mode": Categorical(choices=["avg", "max"])},
        },
        training={
            "optimizer": Categorical(choices=["adam", "sgd"]),
            "momentum": Float(low=0.8, high=0.95, when={"optimizer": "sgd"}),
            "learning_rate": Float(low=1e-4, high=3e-2, log=True),
            "batch_size": 32,
        },
    )
    good = {
        "num_blocks": 2,
        "blocks.0.filters": 12,
        "blocks.0.pooling": "max",
        "blocks.1.filters": 12,
        "blocks.1.pooling": "max",
        "pool.mode": "avg",
        "optimizer": "adam",
        "learning_rate": 0.02,
    }
    bad = {
        "num_blocks": 1,
        "blocks.0.filters": 4,
        "blocks.0.pooling": "avg",
        "pool.mode": "avg",
        "optimizer": "sgd",
        "momentum": 0.8,
        "learning_rate": 1e-4,
    }
    stores = {"storage": str(tmp / "optuna.journal"), "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"}
    result = Search(space, study_name="exp", max_trials=2, seed=0, enqueue=[good, bad], verbose=False, **stores).fit(
        data=digits_small, epochs=4
    )
    trials = result.study.trials
    states = [(t.state.name, t.value, t.user_attrs.get("fail_reason")) for t in trials]  # seen once: trial 0 no value
    assert None not in (trials[0].value, trials[1].value), states
    assert trials[0].value > trials[1].value and "model_artifact" not in trials[1].user_attrs
    return result, space, tmp


def test_result_export_logs_to_the_parent_run_and_registers_the_model(search):
    from mlflow.tracking import MlflowClient

    result, _, tmp = search
    report = result.export(tmp / "best", formats="keras,float32,int8", verbose=False, **FAST)
    assert report.meta["trial"] == 0 and report.meta["model_source"] == "stored"
    assert all(report.ok(v) for v in ("keras", "float32", "int8"))
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.metrics["export.int8.accuracy"] == pytest.approx(report["int8"]["accuracy"])
    assert run.data.metrics["export.float32.size_bytes"] == report["float32"]["size_bytes"]
    assert run.data.tags["automl.export.int8"] == "ok"
    logged = {f.path for f in client.list_artifacts(result.mlflow_run_id, "export")}
    assert {"export/REPORT.md", "export/export_report.json", "export/model_int8.tflite"} <= logged
    versions = client.search_model_versions("name='exp'")
    assert len(versions) == 1 and versions[0].source == f"runs:/{result.mlflow_run_id}/export"
    assert versions[0].tags["automl.trial"] == "0" and report.meta["registered"] == {"name": "exp", "version": 1}


def test_trial_without_stored_model_is_retrained_from_its_parameters(search):
    result, space, tmp = search
    with pytest.raises(ExportError, match="trial 1 has no stored model .* cannot be rebuilt: .*space"):
        result.export(tmp / "t1", trial=1, formats="float32", register=False, verbose=False)
    with pytest.raises(ExportError, match="has no trial 7"):
        result.export(tmp / "t7", trial=7, space=space, register=False, verbose=False)
    report = result.export(
        tmp / "t1", trial=1, space=space, formats="keras,float32", register=False, verbose=False, **FAST
    )
    assert report.meta["model_source"] == "retrained" and report.meta["trial"] == 1
    # same seed, same settings: the retrained model scores what the trial scored
    assert report["keras"]["accuracy"] == pytest.approx(result.study.trials[1].value, abs=0.02)


def test_int8_selection_ranks_by_running_int8_files_and_distillation_exports_a_student(search):
    result, space, tmp = search
    report = result.export(
        tmp / "sel",
        select_int8_top_k=2,
        distill=True,
        distill_epochs=3,
        space=space,
        formats="float32,int8",
        register=False,
        verbose=False,
        **FAST,
    )
    sel = report.extra["selection"]
    assert [c["trial"] for c in sel["candidates"]] == [0, 1]
    assert sel["chosen"] == max(sel["candidates"], key=lambda c: c["int8"])["trial"] == report.meta["trial"]
    # each candidate's float32 score is its trial's own model run (trial 1's retrained from its parameters)
    for c in sel["candidates"]:
        assert c["float32"] == pytest.approx(result.study.trials[c["trial"]].value, abs=0.02)
    # the chosen trial's int8 score is what its exported int8 file scores when run again by hand
    pred = TFLiteRunner(tmp / "sel" / "model_int8.tflite")(result.dataset.x_val)
    measured = float(np.mean(pred.argmax(1) == result.dataset.y_val))
    chosen = next(c for c in sel["candidates"] if c["trial"] == sel["chosen"])
    assert chosen["int8"] == pytest.approx(measured) == report["int8"]["accuracy"]
    student = report.extra["student"]
    assert student["meta"]["param_count"] < report.meta["param_count"]
    assert "trial 1" in student["meta"]["student"]  # the smaller Pareto member's architecture
    assert student["variants"]["int8"]["status"] == "ok" and (tmp / "sel" / "student" / "model_int8.tflite").exists()
    md = (tmp / "sel" / "REPORT.md").read_text()
    assert "Teacher vs student" in md and "Quantization-aware selection" in md


def test_pareto_front_exports_each_member(search):
    result, space, tmp = search
    summary = result.export(
        tmp / "pareto", trial="pareto", space=space, formats="float32", register=False, verbose=False, **FAST
    )
    members = summary.extra["pareto"]
    assert set(members) == {"0", "1"}  # the big accurate one and the small weak one
    assert (tmp / "pareto" / "trial-000" / "model_float32.tflite").exists()
    assert (tmp / "pareto" / "trial-001" / "model_float32.tflite").exists()
    assert "## Trial 0" in (tmp / "pareto" / "REPORT.md").read_text()


# ---------------------------------------------------------------- the command


def cli(args, cwd):
    env = {**os.environ, "AUTOML_HOME": str(Path(cwd) / "mlruns")}
    return subprocess.run(
        [sys.executable, "-m", "automl.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_exports_a_study_on_builtin_data_and_explains_bad_input(tmp_path):
    from automl import Search

    space = tmp_path / "mlp.yaml"
    space.write_text(
        "name: mlp\narchitecture:\n  hidden: {block: dense, units: [16, 32]}\n"
        "training:\n  learning_rate: {type: float, low: 0.003, high: 0.03, log: true}\n"
    )
    Search(
        str(space),
        study_name="wine",
        max_trials=1,
        seed=0,
        verbose=False,
        storage=str(tmp_path / "mlruns" / "optuna.journal"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
    ).fit(data=load_data("wine", seed=0), epochs=2)
    # no --data: the study's built-in set is reloaded with its recorded split and checked
    ok = cli(
        ["export", "--study", "wine", "--out", "exp", "--formats", "float32,int8", "--latency-runs", "5"], tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    assert "float32" in ok.stdout and "int8" in ok.stdout and "registered as wine version 1" in ok.stderr
    from test_cli import ABSL_LINE

    assert not ABSL_LINE.search(ok.stderr)  # TensorFlow's C++ start-up lines stay off the terminal
    report = json.loads((tmp_path / "exp" / "export_report.json").read_text())
    assert report["variants"]["int8"]["status"] == "ok" and report["eval_samples"] == 36
    for args, message in [
        (["--study", "nope"], "error: no study 'nope' in the storage (studies: wine)"),
        (["--study", "wine", "--data", "breast_cancer"], "is not the data study 'wine' was run on"),
        (["--study", "wine", "--trial", "3"], "error: study 'wine' has no trial 3"),
    ]:
        bad = cli(["export", "--out", "x", *args], tmp_path)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr


def test_distillation_loss_for_regression_is_in_units_of_the_target_variance():
    from automl.export.distill import distillation_loss

    labels, teacher = np.array([1e5, 3e5, 2e5]), np.array([1.2e5, 2.5e5, 2.0e5])
    student = np.array([[1.1e5], [2.8e5], [2.2e5]], "float32")
    y_true = np.stack([labels, teacher], axis=1).astype("float32")
    want = (0.3 * (labels - student[:, 0]) ** 2 + 0.7 * (teacher - student[:, 0]) ** 2) / 1e5**2
    got = np.asarray(distillation_loss(False, temperature=1.0, alpha=0.3, target_std=1e5)(y_true, student))
    # as a search's trials train: SGD steps as on a standardized target
    np.testing.assert_allclose(got, want, rtol=1e-4)
