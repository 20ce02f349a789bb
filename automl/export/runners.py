"""Running exported files: the LiteRT interpreter for `.tflite`, Keras for `.keras`, TensorFlow for a
SavedModel. Each runner takes an array, or a dict of arrays keyed by the model's input names (table
columns), and returns float32 predictions."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError


def n_samples(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def rows(x, index):
    """The same rows (a slice or index array) of an array or of every array of a dict."""
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


def utf8_bytes(a) -> np.ndarray:
    """Strings as the UTF-8 bytes a TFLite string tensor holds (numpy's `astype(bytes)` takes ASCII only:
    a category "grün" failed every TFLite file)."""
    return np.char.encode(np.asarray(a).astype(str), "utf-8")


def tensor_input(x):
    """Numpy string arrays (which `model.predict` rejects) as string tensors, in arrays and dicts."""
    if isinstance(x, dict):  # Keras takes no mix of arrays and tensors in one dict
        import tensorflow as tf

        return {k: tf.constant(v.astype(str) if v.dtype.kind in "OUS" else v) for k, v in x.items()}
    if x.dtype.kind in "OUS":
        import tensorflow as tf

        return tf.constant(x.astype(str))
    return x


@contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """The converter and LiteRT print diagnostics from C++ straight to file descriptor 2; the
    exception the converter raises holds the same text, so it is dropped here."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _interpreter(
    path: Path | None = None, content: bytes | None = None, threads: int | None = None, xnnpack: bool = True
):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with native_stderr_quiet():
        if path is not None:
            return Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
        return Interpreter(model_content=content, num_threads=threads, experimental_op_resolver_type=resolver)


class TFLiteRunner:
    """Runs a `.tflite` file with the LiteRT interpreter: float (or str) in, float out, any batch size.

    `x` is an array, or a dict keyed by the model's input names (table columns)."""

    def __init__(
        self,
        path: str | Path | None = None,
        threads: int | None = 1,
        content: bytes | None = None,
        xnnpack: bool = True,
    ):
        self.interp = _interpreter(Path(path) if path else None, content, threads=threads, xnnpack=xnnpack)
        if self.interp.get_signature_list():
            runner = self.interp.get_signature_runner()
            self.inputs, output = runner.get_input_details(), runner.get_output_details()
            self.output = output[sorted(output)[0]]
        else:
            self.inputs = {d["name"]: d for d in self.interp.get_input_details()}
            self.output = self.interp.get_output_details()[0]
        fixed = [int(d["shape_signature"][0]) for d in self.inputs.values() if int(d["shape_signature"][0]) != -1]
        self.fixed_batch = fixed[0] if fixed else None
        self.batch: int | None = None

    def _resize(self, n: int):
        if n != self.batch:
            if not self.fixed_batch:
                for d in self.inputs.values():
                    self.interp.resize_tensor_input(d["index"], [n, *d["shape"][1:]])
            self.interp.allocate_tensors()
            self.batch = n

    def __call__(self, x) -> np.ndarray:
        n = n_samples(x)
        if self.fixed_batch and n != self.fixed_batch:
            step = self.fixed_batch
            return np.concatenate([self(rows(x, slice(i, i + step))) for i in range(0, n, step)])
        self._resize(n)
        if isinstance(x, dict):
            missing = [k for k in self.inputs if k not in x]
            if missing:
                raise ExportError(f"the TFLite file takes inputs {', '.join(self.inputs)}; {missing[0]!r} is missing")
            values = {k: x[k] for k in self.inputs}
        else:
            if len(self.inputs) != 1:
                raise ExportError(
                    f"the TFLite file takes {len(self.inputs)} inputs ({', '.join(self.inputs)}): pass a dict"
                )
            values = {next(iter(self.inputs)): x}
        for key, value in values.items():
            d = self.inputs[key]
            dtype, (scale, zero) = d["dtype"], d["quantization"]
            value = np.asarray(value)
            if value.dtype.kind in "OU":
                value = utf8_bytes(value)
            elif scale and np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                value = np.clip(np.round(value.astype("float32") / scale + zero), info.min, info.max).astype(dtype)
            else:
                value = value.astype(dtype)
            self.interp.set_tensor(d["index"], value)
        self.interp.invoke()
        y = self.interp.get_tensor(self.output["index"])
        scale, zero = self.output["quantization"]
        if scale and np.issubdtype(y.dtype, np.integer):
            y = (y.astype("float32") - zero) * scale
        return np.asarray(y, "float32")

    def facts(self) -> dict[str, Any]:
        """Input/output types and how many tensors of each type the file holds (weights included)."""
        counts: dict[str, int] = {}
        for t in self.interp.get_tensor_details():
            name = np.dtype(t["dtype"]).name
            counts[name] = counts.get(name, 0) + 1
        inputs = sorted({np.dtype(d["dtype"]).name for d in self.inputs.values()})
        return {
            "input_dtype": "/".join(inputs),
            "output_dtype": np.dtype(self.output["dtype"]).name,
            "tensor_types": dict(sorted(counts.items())),
        }


class KerasRunner:
    """A loaded Keras model, all samples in one batch."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        return np.asarray(self.model.predict(tensor_input(x), batch_size=max(n_samples(x), 1), verbose=0), "float32")


class SavedModelRunner:
    """A SavedModel's `serve` signature (what TensorFlow Serving calls)."""

    def __init__(self, path: Path):
        import tensorflow as tf

        self.tf, self.loaded = tf, tf.saved_model.load(str(path))  # keep it: `serve` needs its variables

    def __call__(self, x):
        x = tensor_input(x)
        if isinstance(x, dict):
            x = {k: self.tf.constant(v) for k, v in x.items()}
        return np.asarray(self.loaded.serve(self.tf.constant(x) if not isinstance(x, dict) else x), "float32")


def predict_keras(model, x, batch_size: int) -> np.ndarray:
    return np.asarray(model.predict(tensor_input(x), batch_size=batch_size, verbose=0), "float32")
