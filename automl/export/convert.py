"""Conversion: a Keras model to a SavedModel, and a SavedModel to the four TFLite variants.

`float32`, `float16` (half-size weights), `dynamic_int8` (int8 weights, float activations) and
`int8` (full-integer, calibrated on a representative sample of the training data). Models are made
LiteRT-friendly first without changing what they compute (`tflite_plan`): recurrent layers are
unrolled where the sequence length is fixed, and an in-graph TextVectorization that LiteRT cannot
run is cut off (the files then take token ids and the vocabulary is written beside them).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError
from .runners import TFLiteRunner, n_samples, native_stderr_quiet, rows, utf8_bytes

TFLITE_VARIANTS = ("float32", "float16", "dynamic_int8", "int8")
FORMATS = ("keras", "saved_model", *TFLITE_VARIANTS)
ALIASES = {"tflite": TFLITE_VARIANTS, "all": FORMATS}
FILES = {"keras": "model.keras", "saved_model": "saved_model", **{v: f"model_{v}.tflite" for v in TFLITE_VARIANTS}}


def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """`"keras,tflite"` or `["float32", "int8"]` -> known format names in a fixed order."""
    if formats is None:
        return FORMATS
    items = [f.strip() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    chosen: set[str] = set()
    for item in items:
        name = item.lower().removeprefix("tflite_").replace("-", "_")
        if item.lower() in ALIASES:
            chosen.update(ALIASES[item.lower()])
        elif name in FORMATS:
            chosen.add(name)
        else:
            raise ExportError(f"unknown export format {item!r} (known: {', '.join(FORMATS)}, tflite, all)")
    if not chosen:
        raise ExportError("no export format given")
    return tuple(f for f in FORMATS if f in chosen)


def export_saved_model(model, path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    model.export(str(path), format="tf_saved_model", verbose=False)


def convert_tflite(
    saved_model_dir: str | Path,
    variant: str,
    x_representative=None,
    *,
    int8_io: bool = False,
    select_tf_ops: bool = False,
) -> bytes:
    """One TFLite flatbuffer from a SavedModel. `int8` needs `x_representative` (a few hundred rows)."""
    import tensorflow as tf

    if variant not in TFLITE_VARIANTS:
        raise ExportError(f"unknown TFLite variant {variant!r} (known: {', '.join(TFLITE_VARIANTS)})")
    c = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if variant != "float32":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        c.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if x_representative is None or n_samples(x_representative) == 0:
            raise ExportError("int8 conversion needs x_representative (rows of training data)")
        sample = x_representative
        arrays = list(sample.values()) if isinstance(sample, dict) else [sample]
        float_input = all(np.issubdtype(a.dtype, np.floating) for a in arrays)

        def one(a, i):
            row = a[i : i + 1]
            if np.issubdtype(a.dtype, np.floating):
                return row.astype("float32")
            return utf8_bytes(row) if a.dtype.kind in "OU" else row

        def representative():
            for i in range(n_samples(sample)):
                yield {k: one(a, i) for k, a in sample.items()} if isinstance(sample, dict) else [one(sample, i)]

        c.representative_dataset = representative
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            if float_input and not isinstance(sample, dict):
                c.inference_input_type = tf.int8
            c.inference_output_type = tf.int8
    if select_tf_ops:
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        c._experimental_lower_tensor_list_ops = False
    with native_stderr_quiet():
        return c.convert()


# ---------------------------------------------------------------- making a model LiteRT-friendly


@dataclass
class TFLitePlan:
    """What the TFLite converter gets: a SavedModel, why it differs from the model, input preparation."""

    source: Path
    notes: list[str] = field(default_factory=list)
    prepare: Callable[[Any], Any] | None = None  # raw inputs -> what the TFLite file takes (token ids)
    text_input: dict | None = None


def tflite_plan(model, saved: Path, tmp: Path, out: Path) -> TFLitePlan:
    """Make the model LiteRT-friendly without changing what it computes.

    In-graph `TextVectorization` needs TensorFlow string ops LiteRT lacks: when the whole model does
    not convert, the TFLite files start at the token ids (the vocabulary is written beside them for
    the app's tokenizer). Recurrent layers are unrolled (same weights) where the sequence length is
    fixed, since LiteRT has no TensorList ops for their loops."""
    plan, target = TFLitePlan(saved), model
    split = _text_vectorizer_split(model)
    if split:
        vectorizer, tokens_model, tokens = split
        try:  # the vectorizer alone: its converter error is the precise reason
            import keras

            export_saved_model(keras.Model(model.inputs[0], tokens), tmp / "vectorizer")
            convert_tflite(tmp / "vectorizer", "float32")
        except Exception as exc:
            target = tokens_model
            dtype = str(tokens_model.inputs[0].dtype)  # a bag of n-grams is counted in ints but taken as floats
            plan.prepare = lambda x: _tokenize(vectorizer, x).astype(dtype)
            plan.text_input = _write_vectorizer(vectorizer, out)
            shape = (None, *tokens_model.inputs[0].shape[1:])
            what = (
                f"token ids {shape}"
                if plan.text_input["output_mode"] == "int"
                else f"a {plan.text_input['output_mode']} vector {shape} over the n-grams of vocabulary.txt"
            )
            plan.notes.append(
                f"takes {what} ({tokens_model.inputs[0].dtype}): the in-graph TextVectorization "
                f"does not convert ({short_error(exc)}); latency excludes tokenization"
            )
    target = _unroll_rnns(target, plan.notes)
    if target is not model:
        plan.source = tmp / "tflite_source"
        export_saved_model(target, plan.source)
    return plan


def _text_vectorizer_split(model):
    """(vectorizer, model from its token ids to the output, the token ids) when a TextVectorization
    reads the input. The vectorizer may serve several models (a QAT twin shares it): the call that
    reads this model's input is the one that counts."""
    import keras

    if len(model.inputs) != 1:
        return None
    for layer in model.layers:
        if isinstance(layer, keras.layers.TextVectorization):
            own = model.inputs[0]
            nodes = getattr(layer, "_inbound_nodes", [])
            nodes = sorted(nodes, key=lambda n: not any(t is own for t in n.input_tensors))
            for node in nodes:  # this model's own call first
                inputs, outputs = list(node.input_tensors), list(node.output_tensors)
                if inputs and outputs and (inputs[0] is model.inputs[0] or inputs[0].name == model.inputs[0].name):
                    try:
                        return layer, keras.Model(outputs[0], model.outputs[0]), outputs[0]
                    except (AttributeError, ValueError):
                        continue  # another model's call of the shared vectorizer
    return None


def _tokenize(vectorizer, x) -> np.ndarray:
    import tensorflow as tf

    x = np.asarray(x).astype(str)
    return np.concatenate([np.asarray(vectorizer(tf.constant(x[i : i + 4096]))) for i in range(0, len(x), 4096)])


def _write_vectorizer(vectorizer, out: Path) -> dict[str, Any]:
    """`vocabulary.txt` (token id or n-gram index = line number) and `text_vectorization.json` for the
    app's tokenizer."""
    vocabulary = [str(t) for t in vectorizer.get_vocabulary()]
    (out / "vocabulary.txt").write_text("\n".join(t.replace("\n", " ") for t in vocabulary) + "\n")
    config = {
        k: v
        for k, v in vectorizer.get_config().items()
        if k in ("standardize", "split", "ngrams", "output_mode", "output_sequence_length", "max_tokens")
    }
    info = {**config, "vocabulary_file": "vocabulary.txt", "vocabulary_size": len(vocabulary)}
    if config.get("output_mode") == "int":
        info["ids"] = "line number in vocabulary.txt; 0 is padding, 1 an unknown token"
    else:  # a bag of n-grams (the text_ngrams block): one input per vocabulary line
        info["vector"] = (
            "index = line number in vocabulary.txt (n-grams of the split tokens joined by one "
            "space); index 0 counts every n-gram not in the vocabulary"
        )
        idf = getattr(getattr(vectorizer, "_lookup_layer", None), "idf_weights", None)  # adapted, not in the config
        if config.get("output_mode") == "tf_idf" and idf is not None:
            info["idf_weights"] = [float(w) for w in np.asarray(idf)]
    (out / "text_vectorization.json").write_text(json.dumps(info, indent=2, default=str))
    return info


def _unroll_rnns(model, notes: list[str]):
    """A copy with recurrent layers unrolled (same weights) where their sequence length is fixed."""
    import keras

    steps: set[int] = set()

    def fixed_length(layer) -> int | None:
        try:
            x = layer.input
            return (x[0] if isinstance(x, (list, tuple)) else x).shape[1]  # [x, mask] after a masking layer
        except (AttributeError, ValueError, IndexError):
            return None

    def unroll(layer):
        length = fixed_length(layer)
        if isinstance(layer, keras.layers.RNN) and not layer.unroll and length:
            steps.add(length)
            return layer.__class__.from_config({**layer.get_config(), "unroll": True})
        if isinstance(layer, keras.layers.Bidirectional) and length:
            steps.add(length)
            cfg = layer.get_config()
            for key in ("layer", "backward_layer"):
                if cfg.get(key):
                    cfg[key]["config"]["unroll"] = True
            return keras.layers.Bidirectional.from_config(cfg)
        return layer  # shared, weights and state included

    if not any(isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)) for layer in _all_layers(model)):
        return model
    try:
        clone = keras.models.clone_model(model, clone_function=unroll)
        if not steps:
            return model  # unknown sequence lengths: the converter will say why
        clone.set_weights(model.get_weights())
    except Exception as exc:
        notes.append(f"recurrent layers kept rolled ({type(exc).__name__}: {str(exc)[:200]})")
        return model
    notes.append(f"recurrent layers unrolled over {'/'.join(map(str, sorted(steps)))} steps for LiteRT")
    return clone


def _all_layers(model) -> list:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if hasattr(layer, "layers") and layer is not model:
            layers += _all_layers(layer)
    return layers


# ---------------------------------------------------------------- why a conversion failed


def flex_probe(saved: Path, x_sample) -> str | None:
    """Would TF Select (Flex) ops make it convert, and can the LiteRT interpreter run the result?"""
    try:
        content = convert_tflite(saved, "float32", select_tf_ops=True)
    except Exception as exc:
        return f"not even with TF Select ops ({short_error(exc)})"
    try:
        TFLiteRunner(content=content)(rows(x_sample, slice(0, 1)))
    except Exception as exc:
        msg = str(exc)
        ops = sorted(set(re.findall(r"\((Flex\w+)\)", msg))) or ["Flex ops"]
        return (
            f"it converts with TF Select ops, but the LiteRT interpreter cannot run them "
            f"({', '.join(ops)} failed to prepare: no Flex delegate in ai-edge-litert)"
        )
    return "it converts and runs with TF Select ops (not exported: phones would need the Flex delegate)"


def short_error(exc: Exception) -> str:
    msg = str(exc)
    if m := re.search(r"TF Select ops: ([^\n]+)", msg):
        return f"needs TensorFlow ops outside LiteRT's built-in set: {m.group(1).strip()}"
    if "Lowering tensor list ops is failed" in msg:
        return (
            "a recurrent loop over a sequence of unknown length (TensorList ops) cannot be lowered to "
            "LiteRT built-in ops; give the input a fixed sequence length so it can be unrolled"
        )
    errors = [re.sub(r"^.*?error: ", "", line).strip() for line in msg.splitlines() if "error:" in line]
    errors = [e for e in errors if e and not e.startswith("failed while converting")]
    return (errors[-1] if errors else msg.strip().splitlines()[-1] if msg.strip() else type(exc).__name__)[:400]


def converter_reason(exc: Exception, flex: str | None) -> str:
    reason = f"converter: {short_error(exc)}"
    return f"{reason}; {flex}" if flex else reason
