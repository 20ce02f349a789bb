"""Shared check for block and space tests: a model trains one step, reloads from `.keras` with
identical predictions, and converts to TFLite, where the LiteRT interpreter agrees with Keras.

    from model_checks import check_model
    result = check_model(model, x, y, tmp_path)                 # must convert
    result = check_model(model, x, y, tmp_path, tflite=False)   # must NOT convert: read result.tflite_error
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

RELOAD_ATOL = 1e-6  # .keras reload: same graph, same weights
TFLITE_ATOL = 1e-4  # LiteRT float32 kernels vs TensorFlow's


@dataclass
class Checked:
    model: object  # the trained keras.Model
    reloaded: object  # the same model loaded back from `.keras`
    predictions: np.ndarray  # Keras predictions on x after the training step
    loss: float  # the training step's loss
    tflite_error: str | None  # None when the model converted and the interpreter agreed
    tflite_diff: float | None = None  # max |TFLite - Keras|


def check_model(model, x, y, tmp_path: Path, *, loss=None, tflite: bool = True, atol: float = TFLITE_ATOL) -> Checked:
    """Train one step on (x, y), check the `.keras` round trip, then the TFLite conversion.

    `tflite=True` asserts the conversion works and agrees within `atol`; `tflite=False` asserts it
    fails and returns the converter's reason in `tflite_error` (so a converter that learns the op
    makes the test fail and the documentation gets updated). An uncompiled model is compiled with
    Adam and sparse cross-entropy (integer y) or MSE, eagerly: for one step, tracing costs more.
    """
    import keras

    tmp_path = Path(tmp_path)
    if not model.compiled:
        default = "sparse_categorical_crossentropy" if np.issubdtype(np.asarray(y).dtype, np.integer) else "mse"
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss or default, run_eagerly=True)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=len(y), epochs=1, verbose=0)
    step_loss = float(history.history["loss"][-1])
    assert np.isfinite(step_loss), f"training step gave loss {step_loss}"
    assert before and any(not np.array_equal(b, np.array(w)) for b, w in zip(before, model.trainable_weights)), (
        "the training step changed no trainable weight"
    )

    predictions = np.asarray(model.predict(x, batch_size=len(y), verbose=0))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        np.asarray(reloaded.predict(x, batch_size=len(y), verbose=0)),
        predictions,
        rtol=0,
        atol=RELOAD_ATOL,
        err_msg="reloaded .keras model predicts differently",
    )

    result = Checked(model, reloaded, predictions, step_loss, None)
    try:
        content = tflite_bytes(model, tmp_path / "saved_model")
    except Exception as exc:
        result.tflite_error = converter_reason(exc)
        assert not tflite, f"TFLite conversion failed: {result.tflite_error}"
        return result
    assert tflite, "the model converted to TFLite after all: update the test and the documented reason"
    out = run_tflite(content, x)
    result.tflite_diff = float(np.max(np.abs(out - predictions)))
    assert result.tflite_diff <= atol, f"TFLite differs from Keras by {result.tflite_diff:.2e} (> {atol})"
    return result


def tflite_bytes(model, saved_dir: Path) -> bytes:
    """float32 TFLite flatbuffer, converted from the model's SavedModel export (as automl's exporter does)."""
    import tensorflow as tf

    model.export(str(saved_dir), format="tf_saved_model", verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(str(saved_dir)).convert()


def run_tflite(content: bytes, x) -> np.ndarray:
    """Run the flatbuffer on a whole batch with the LiteRT interpreter (the one phones use)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner()
    details = runner.get_input_details()
    feeds = x if isinstance(x, dict) else {next(iter(details)): x}
    outputs = runner(**{k: _as_dtype(np.asarray(v), details[k]["dtype"]) for k, v in feeds.items()})
    return np.asarray(next(iter(outputs.values())))


def _as_dtype(a: np.ndarray, dtype) -> np.ndarray:
    return a if a.dtype.kind in "OSU" else a.astype(dtype)


def converter_reason(exc: Exception) -> str:
    """The converter's own error lines, without the MLIR location noise."""
    lines = [line.split("error: ", 1)[1].strip() for line in str(exc).splitlines() if "error: " in line]
    return "; ".join(dict.fromkeys(lines)) or f"{type(exc).__name__}: {str(exc).strip()[:500]}"
