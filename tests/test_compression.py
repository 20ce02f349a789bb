"""Compression for phones: the `compression:` section (validated, sampled, searched against the
gzip'd int8 size), quantization-aware training that ends in a full-integer int8 file, and
`automl export --prune --qat`."""

import json

import numpy as np
import pytest
from conftest import mlflow_runs
from test_cli import run

from automl.space import Categorical, Float, SearchSpace, SpaceError

ARCH = {
    "conv": {"block": "conv", "filters": 16, "kernel_size": 3, "pooling": "max"},
    "pool": {"block": "global_pool", "mode": "avg"},
    "hidden": {"block": "dense", "units": 96},
}


@pytest.mark.parametrize(
    "section, key, message",
    [
        ({"sparsity": 1.5}, "compression.sparsity", "must be a number in [0, 0.99]"),
        ({"sparsity": Float(low=0.0, high=1.2)}, "compression.sparsity", "must be a number in [0, 0.99]"),
        ({"schedule": ["polynomial", "cubic"]}, "compression.schedule", "must be one of polynomial, oneshot"),
        ({"qat": "yes"}, "compression.qat", "must be true or false"),
        ({"epochs": 0}, "compression.epochs", "must be an integer in [1, 100]"),
        ({"prune": 0.5}, "compression.prune", "unknown key (allowed: sparsity, schedule"),
    ],
)
def test_the_compression_section_is_validated_naming_the_key(section, key, message):
    with pytest.raises(SpaceError) as info:
        SearchSpace(ARCH, {"learning_rate": 0.01}, compression=section, source="s.yaml")
    assert str(info.value).startswith(f"s.yaml: {key}: {message}"), str(info.value)


def test_the_compression_section_is_sampled_under_its_prefix_and_leaves_old_fingerprints_alone():
    import optuna

    plain = SearchSpace(ARCH, {"learning_rate": 0.01})
    space = SearchSpace(
        ARCH,
        {"learning_rate": 0.01, "schedule": "cosine"},  # the training section's own `schedule` does not clash
        compression={"sparsity": Categorical(choices=[0.0, 0.8]), "qat": [False, True], "schedule": "oneshot"},
        start=[{"compression.sparsity": 0.8, "compression.qat": True}],
    )
    assert plain.fingerprint() == SearchSpace(ARCH, {"learning_rate": 0.01}, compression={}).fingerprint()
    config = space.sample(optuna.trial.FixedTrial({"compression.sparsity": 0.8, "compression.qat": True}))
    assert config.compression == {"sparsity": 0.8, "qat": True, "schedule": "oneshot"}
    assert config.training == {"learning_rate": 0.01, "schedule": "cosine"}
    assert {"compression.sparsity", "compression.qat"} <= set(space.parameters())


def _trained_cnn(data, epochs=12):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    h = keras.layers.DepthwiseConv2D(3, activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train / 16.0, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


def test_qat_trains_the_model_itself_and_its_int8_file_has_int8_tensors_and_agrees(tmp_path, digits_small):
    """Tolerance: the int8 file (int8 in and out) converted from the QAT twin predicts the class the twin
    predicts on at least 98 % of held-out digits, and its probabilities differ by at most 0.1."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from automl.export.convert import convert_tflite, export_saved_model
    from automl.qat import FakeQuantized, quantize_aware

    x, y, x_val = digits_small.x_train / 16.0, digits_small.y_train, digits_small.x_val / 16.0
    model = _trained_cnn(digits_small)
    before = [w.copy() for w in model.get_weights()]
    twin = quantize_aware(model)
    wrapped = [layer for layer in twin.layers if isinstance(layer, FakeQuantized)]
    assert [w.layer for w in wrapped] == model.layers[1:]  # the model's own layers, not copies
    twin.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    twin.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(before, model.get_weights()))  # training trained it
    ranges = {w.layer.name: float(w.range_max) for w in wrapped if w.quantize_output}
    assert len(ranges) == 3 and all(high > 0 for high in ranges.values())  # conv, depthwise, dense: learned
    assert not any(w.quantize_output for w in wrapped if type(w.layer).__name__ == "Flatten")  # keeps its input's

    export_saved_model(twin, tmp_path / "saved")  # its FakeQuant ops give the file the ranges it learned
    content = convert_tflite(tmp_path / "saved", "int8", x[:100].astype("float32"), int8_io=True)
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    kinds = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.float32 not in kinds  # full-integer: weights and activations int8 (biases int32)
    scale, zero = inp["quantization"]
    o_scale, o_zero = out["quantization"]
    probs = []
    for row in x_val.astype("float32"):
        q = np.clip(np.round(row[None] / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q)
        interpreter.invoke()
        probs.append((interpreter.get_tensor(out["index"]).astype("float32") - o_zero) * o_scale)
    tflite = np.concatenate(probs)
    keras_probs = twin.predict(x_val, verbose=0)
    agreement = float((tflite.argmax(1) == keras_probs.argmax(1)).mean())
    gap = float(np.abs(tflite - keras_probs).max())
    assert agreement >= 0.98 and gap <= 0.1, (agreement, gap)
    plain = keras.models.clone_model(model)  # the plain model computes what the twin does, in float
    plain.set_weights(model.get_weights())
    assert float((plain.predict(x_val, verbose=0).argmax(1) == keras_probs.argmax(1)).mean()) >= 0.95


SPACE_YAML = """
name: compressible
architecture:
  conv: {block: conv, filters: 16, kernel_size: 3, pooling: max}
  flat: {block: global_pool, mode: flatten}
  hidden: {block: dense, units: 64}
training:
  learning_rate: 0.01
  batch_size: 32
compression:
  sparsity: [0.0, 0.8]
  qat: [false, true]
  epochs: 2
start:
  - {compression.sparsity: 0.0, compression.qat: false}
  - {compression.sparsity: 0.8, compression.qat: true}
"""


def test_a_search_prunes_and_quantizes_trials_and_measures_the_gzipped_int8_size_then_export_adds_variants(
    tmp_path,
):
    """Two trials, the same network: one plain, one pruned to 80 % and trained quantization-aware.
    The pruned trial's saved model has 80 % zeros, its gzip'd int8 file is smaller, its value is the
    compressed model's; then `automl export --prune --qat` adds the three compressed files, re-scored."""
    import optuna

    (tmp_path / "space.yaml").write_text(SPACE_YAML)
    args = ["search", "space.yaml", "--data", "digits", "--trials", "2", "--epochs", "4", "--study", "small"]
    args += ["--objective", "val_accuracy", "--objective", "tflite_gzip_bytes:min", "--sampler", "random"]
    result = run(args, tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    from automl.stores import open_storage

    study = optuna.load_study(study_name="small", storage=open_storage(str(tmp_path / "mlruns" / "optuna.journal")))
    plain, pruned = sorted(study.trials, key=lambda t: t.params["compression.sparsity"])
    assert plain.state.name == pruned.state.name == "COMPLETE"
    assert abs(pruned.user_attrs["sparsity"] - 0.8) <= 0.01 and "sparsity" not in plain.user_attrs
    assert pruned.values[1] < 0.6 * plain.values[1]  # gzip'd int8 bytes: the zeros compress
    assert pruned.values[0] > 0.5  # still a digit classifier after pruning and QAT (10 classes)
    assert "uncompressed_value" in pruned.user_attrs
    _, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    tags = {r.data.tags.get("automl.trial_number"): r.data for r in runs}
    assert tags[str(pruned.number)].tags["automl.compression"] == "pruned 0.80 + qat"
    assert "qat_val_accuracy" in tags[str(pruned.number)].metrics
    # the trial's value is the compressed model's: the QAT phase's last validation accuracy
    assert pruned.values[0] == pytest.approx(tags[str(pruned.number)].metrics["qat_val_accuracy"])

    out = tmp_path / "exp"
    args = ["export", "--study", "small", "--out", str(out), "--trial", str(plain.number), "--formats", "float32,int8"]
    args += ["--prune", "0.8", "--qat", "--fine-tune-epochs", "2", "--no-register", "--latency-runs", "5"]
    result = run(args, tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    variants = json.loads((out / "export_report.json").read_text())["variants"]
    assert {"pruned_float32", "pruned_int8", "qat_int8"} <= set(variants)
    for name in ("pruned_float32", "pruned_int8", "qat_int8"):
        row = variants[name]
        assert row["status"] == "ok" and abs(row["sparsity"] - 0.8) <= 0.01, row
        assert row["accuracy"] > 0.5 and row["agreement"] > 0.5, row  # scored on the held-out digits
    assert variants["pruned_int8"]["gzip_bytes"] < 0.6 * variants["int8"]["gzip_bytes"]
    assert variants["pruned_float32"]["gzip_bytes"] < 0.6 * variants["float32"]["gzip_bytes"]
    assert "| pruned_int8 |" in (out / "REPORT.md").read_text()
