"""Export a trained model for serving and for phones, and measure every file written.

Formats: `keras` (`model.keras`), `saved_model` (TensorFlow SavedModel via `model.export`) and four
TFLite variants: `float32`, `float16` (half-size weights), `dynamic_int8` (int8 weights, float
activations) and `int8` (full-integer, calibrated on a representative sample of the training data;
`int8_io=True` also makes the inputs and outputs int8). A variant the converter or the LiteRT
interpreter cannot handle is recorded as `unsupported` with the reason; the others still export.

Every file is then run on held-out data (TFLite files with the LiteRT interpreter, the same one a
phone uses): task metric, agreement with the Keras model's predictions, size, batch-1 latency
(median, p95) and throughput at a batch size. `export_report.json` and `REPORT.md` go beside the
files. Recurrent layers are unrolled for conversion (LiteRT has no TensorList ops) when the sequence
length is fixed. TensorFlow loads only inside the functions here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .results import feasible

TFLITE_VARIANTS = ("float32", "float16", "dynamic_int8", "int8")
FORMATS = ("keras", "saved_model", *TFLITE_VARIANTS)
ALIASES = {"tflite": TFLITE_VARIANTS, "all": FORMATS}
FLOAT32_TOLERANCE = 1e-4  # max |TFLite float32 - Keras| per output value (probabilities or targets)
QUANT_ACCURACY_TOLERANCE = 0.005  # a quantized variant is "as good" within half a point of float32
FILES = {"keras": "model.keras", "saved_model": "saved_model", **{v: f"model_{v}.tflite" for v in TFLITE_VARIANTS}}


class ExportError(ValueError):
    """Export settings or inputs that cannot work; says which argument, file or shape is at fault."""


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


# ---------------------------------------------------------------- the report


@dataclass
class ExportReport:
    """What `export_model` wrote and measured; `variants[name]` is one row of the report."""

    out_dir: str
    task: str
    metric: str                       # accuracy | mae
    eval_samples: int
    batch_size: int
    threads: int | None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    recommended: str | None = None    # smallest TFLite file as good as float32
    meta: dict[str, Any] = field(default_factory=dict)    # trial, study, parameters...
    extra: dict[str, Any] = field(default_factory=dict)   # selection, student (nested reports)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.variants[name]

    def ok(self, name: str) -> bool:
        return self.variants.get(name, {}).get("status") == "ok"

    def path(self, name: str) -> Path:
        return Path(self.out_dir) / self.variants[name]["file"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self) -> None:
        out = Path(self.out_dir)
        (out / "export_report.json").write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        (out / "REPORT.md").write_text(self.markdown())

    def markdown(self) -> str:
        lines = [f"# Export report{' — ' + self.meta['title'] if self.meta.get('title') else ''}", ""]
        facts = {k: v for k, v in self.meta.items() if k != "title" and not isinstance(v, (dict, list))}
        facts.update({"task": self.task, "held-out samples": self.eval_samples,
                      "throughput batch size": self.batch_size, "interpreter threads": self.threads or "default"})
        lines += [f"- {k}: {v}" for k, v in facts.items()]
        lines += ["", *variant_table(self), ""]
        lines += [f"TFLite: {note}." for note in self.extra.get("tflite_notes", [])]
        if self.recommended:
            lines.append(f"Recommended for phones: `{self.variants[self.recommended]['file']}` "
                         f"(smallest TFLite file within {QUANT_ACCURACY_TOLERANCE * 100:.1f} points of float32).")
        lines.append(f"Agreement: share of held-out samples where the file predicts the same class as the Keras "
                     f"model (regression: within 1% of the predictions' spread); float32 TFLite must stay within "
                     f"{FLOAT32_TOLERANCE:g} of Keras per output value. Latency: one sample per call (batch 1), "
                     f"Keras via `model.predict`.")
        if sel := self.extra.get("selection"):
            lines += ["", f"## Quantization-aware selection (top {len(sel['candidates'])} by {sel['ranked_by']})", "",
                      "| trial | float value | int8 " + self.metric + " | float32 TFLite " + self.metric + " |",
                      "| ---: | ---: | ---: | ---: |"]
            lines += [f"| {c['trial']} | {_fmt(c.get('value'))} | {_fmt(c.get('int8'))} | {_fmt(c.get('float32'))} |"
                      for c in sel["candidates"]]
            lines.append(f"\nChosen: trial {sel['chosen']}.")
        if student := self.extra.get("student"):
            lines += ["", "## Teacher vs student (knowledge distillation)", "", *teacher_student_table(self, student)]
        return "\n".join(lines) + "\n"


def variant_table(report: ExportReport) -> list[str]:
    m = report.metric
    head = f"| variant | file | size KB | vs float32 | {m} | agreement | max abs diff | p50 ms | p95 ms | samples/s | note |"
    rows = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    base = report.variants.get("float32", {}).get("size_bytes")
    for name, v in report.variants.items():
        size = v.get("size_bytes")
        ratio = f"{size / base:.0%}" if size and base and v["format"] == "tflite" else ""
        note = v.get("reason") or ""
        if v["status"] != "ok":
            note = f"**{v['status']}**: {note}"
        rows.append(f"| {name} | {v.get('file') or ''} | {_fmt(size / 1024 if size else None, 1)} | {ratio} | "
                    f"{_fmt(v.get(m))} | {_fmt(v.get('agreement'))} | {_fmt(v.get('max_abs_diff'), sci=True)} | "
                    f"{_fmt(v.get('latency_p50_ms'), 3)} | {_fmt(v.get('latency_p95_ms'), 3)} | "
                    f"{_fmt(v.get('throughput_per_s'), 0)} | {note.replace('|', '/')[:600]} |")
    return rows


def teacher_student_table(teacher: ExportReport, student: dict) -> list[str]:
    m = teacher.metric
    rows = [f"| model | variant | params | size KB | {m} | p50 ms | samples/s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for who, rep in (("teacher", teacher.to_dict()), ("student", student)):
        for name in ("keras", "float32", "int8"):
            v = rep["variants"].get(name)
            if v and v["status"] == "ok":
                rows.append(f"| {who} | {name} | {rep['meta'].get('param_count', '')} | {_fmt(v['size_bytes'] / 1024, 1)} | "
                            f"{_fmt(v.get(m))} | {_fmt(v.get('latency_p50_ms'), 3)} | {_fmt(v.get('throughput_per_s'), 0)} |")
    return rows


def _fmt(v, digits: int = 4, sci: bool = False) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    if sci:
        return f"{v:.2e}"
    return f"{v:.{digits}f}" if digits else f"{v:,.0f}"


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ---------------------------------------------------------------- export_model


def export_model(model, out_dir: str | Path, *, data=None, x_eval=None, y_eval=None, x_representative=None,
                 task: str | None = None, formats: str | Iterable[str] | None = None,
                 representative_samples: int = 200, int8_io: bool = False, batch_size: int = 32,
                 eval_samples: int | None = None, latency_runs: int = 100, threads: int | None = 1,
                 seed: int = 0, meta: dict[str, Any] | None = None, verbose: bool = False) -> ExportReport:
    """Write `model` in each format to `out_dir`, run every file on held-out data, write the report.

    `data` (an `automl.Dataset`) supplies the held-out set (`x_val`, `y_val`), the representative
    sample for int8 calibration (`representative_samples` rows of `x_train`) and the task. Without
    it pass `x_eval`, `y_eval` (labels optional: without them only agreement is measured) and
    `x_representative`; inputs are arrays, or dicts of column arrays for a model with one input
    per table column. Returns the `ExportReport`; it is also written as `export_report.json`
    and `REPORT.md` in `out_dir`.
    """
    import keras

    formats = parse_formats(formats)
    if not isinstance(model, keras.Model):
        raise ExportError(f"model must be a keras.Model, not {type(model).__name__}")
    if len(model.outputs) != 1:
        raise ExportError(f"export handles models with one output; this one has {len(model.outputs)}")
    if batch_size < 1 or latency_runs < 1 or representative_samples < 1:
        raise ExportError("batch_size, latency_runs and representative_samples must be at least 1 "
                          f"(got {batch_size}, {latency_runs}, {representative_samples})")
    if data is not None:
        x_eval = data.x_val if x_eval is None else x_eval
        y_eval = data.y_val if y_eval is None else y_eval
        x_representative = data.x_train if x_representative is None else x_representative
        task = task or data.task
    if x_eval is None:
        raise ExportError("export needs held-out inputs to evaluate the files: pass data=Dataset or x_eval")
    x_eval = check_inputs(model, x_eval, "x_eval")
    n_eval = _n(x_eval)
    if y_eval is not None:
        y_eval = np.asarray(y_eval)
        if len(y_eval) != n_eval:
            raise ExportError(f"y_eval has {len(y_eval)} samples but x_eval has {n_eval}")
    rng = np.random.default_rng(seed)
    if eval_samples and n_eval > eval_samples:
        keep = np.sort(rng.choice(n_eval, eval_samples, replace=False))
        x_eval, y_eval = _rows(x_eval, keep), (y_eval[keep] if y_eval is not None else None)
    if x_representative is not None:
        x_representative = check_inputs(model, x_representative, "x_representative")
        if _n(x_representative) > representative_samples:
            keep = rng.choice(_n(x_representative), representative_samples, replace=False)
            x_representative = _rows(x_representative, keep)
    out_units = model.outputs[0].shape[-1]
    task = task or ("classification" if out_units and out_units > 1 else "regression")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in formats:  # a rerun must not leave a stale file of a variant that now fails
        stale = out / FILES[name]
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
    report = ExportReport(str(out), task, "accuracy" if task == "classification" else "mae", _n(x_eval),
                          batch_size, threads, meta=dict(meta or {}))
    report.meta.setdefault("param_count", int(model.count_params()))
    reference = _predict_keras(model, x_eval, batch_size)
    ev = _Evaluator(task, y_eval, reference, x_eval, batch_size, latency_runs)
    say = _printer(verbose)

    if "keras" in formats:
        path = out / FILES["keras"]
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        report.variants["keras"] = ev.run("keras", "keras", path, _KerasRunner(loaded), out)
        report.variants["keras"].update(_keras_call_latency(loaded, x_eval, latency_runs))
        say(report.variants["keras"])
    with tempfile.TemporaryDirectory(prefix="automl-export-") as tmp:
        saved = out / FILES["saved_model"] if "saved_model" in formats else Path(tmp) / "saved_model"
        saved_error = _try(lambda: _export_saved_model(model, saved))
        if "saved_model" in formats:
            if saved_error:
                report.variants["saved_model"] = _not_done("saved_model", "unsupported", saved_error)
            else:
                report.variants["saved_model"] = ev.run("saved_model", "saved_model", saved, _SavedModelRunner(saved), out)
            say(report.variants["saved_model"])
        tflite = [v for v in formats if v in TFLITE_VARIANTS]
        plan = _TFLitePlan(saved)
        if tflite and not saved_error:
            plan = _tflite_plan(model, saved, Path(tmp), out)
            if plan.prepare:  # token ids in: score the files on the tokenized held-out texts
                ev = _Evaluator(task, y_eval, reference, plan.prepare(x_eval), batch_size, latency_runs)
                x_representative = plan.prepare(x_representative) if x_representative is not None else None
            if plan.text_input:
                report.extra["text_input"] = plan.text_input
            if plan.notes:
                report.extra["tflite_notes"] = plan.notes
        source, flex_reason = plan.source, None
        for variant in tflite:
            path = out / FILES[variant]
            if saved_error:
                row = _not_done(variant, "unsupported", f"no SavedModel to convert: {saved_error}")
            elif variant == "int8" and x_representative is None:
                row = _not_done(variant, "skipped", "full-integer int8 needs a representative sample of the "
                                                    "training data (data=Dataset or x_representative)")
            else:
                try:
                    content = convert_tflite(source, variant, x_representative, int8_io=int8_io)
                except Exception as exc:  # noqa: BLE001 - the converter's reason goes into the report
                    if flex_reason is None:
                        flex_reason = _flex_probe(source, _rows(ev.x, slice(0, 1)))
                    row = _not_done(variant, "unsupported", _converter_reason(exc, flex_reason))
                else:
                    path.write_bytes(content)
                    row = ev.run(variant, "tflite", path, None, out, threads=threads)
            report.variants[variant] = row
            say(row)
    _note_int8_loss(report)
    report.recommended = _recommend(report)
    report.write()
    return report


def _note_int8_loss(report: ExportReport):
    """Say why full-integer int8 lost accuracy when it did: its first op quantizes the raw inputs."""
    base, row = report.variants.get("float32", {}), report.variants.get("int8", {})
    if report.metric != "accuracy" or row.get("accuracy") is None or base.get("accuracy") is None:
        return
    loss = base["accuracy"] - row["accuracy"]
    if loss > QUANT_ACCURACY_TOLERANCE:
        row["reason"] = "; ".join(filter(None, [row.get("reason"), (
            f"{loss * 100:.1f} points below float32: full-integer int8 quantizes the inputs and every activation "
            f"with one scale per tensor, which loses inputs whose features span very different ranges; "
            f"dynamic_int8 keeps activations in float")]))


def check_inputs(model, x, what: str):
    """Inputs as the model takes them: an array, or a dict with one array per model input (table
    columns, by input name); text as an object array of str. Raises ExportError naming the fault."""
    names = [t.name for t in model.inputs]
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            raise ExportError(f"{what} has no input {missing[0]!r} (the model takes {', '.join(names)})")
        x = {t.name: _check_shape(_as_array(x[t.name]), t.shape, f"{what}[{t.name!r}]") for t in model.inputs}
        lengths = {len(v) for v in x.values()}
        if len(lengths) > 1:
            raise ExportError(f"{what}: the inputs have different numbers of samples ({sorted(lengths)})")
        return x
    if len(names) > 1:
        raise ExportError(f"the model takes {len(names)} inputs ({', '.join(names)}): pass {what} as a dict of arrays")
    return _check_shape(_as_array(x), model.inputs[0].shape, what)


def _as_array(x) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(object) if x.dtype.kind in "US" else x


def _check_shape(x: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    if x.ndim < 1 or len(x) == 0:
        raise ExportError(f"{what} is empty")
    shape, got = tuple(shape[1:]), tuple(x.shape[1:])
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
        raise ExportError(f"{what} has shape {got} per sample but the model takes {shape}")
    return x


def _n(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _rows(x, index):
    """The same rows (a slice or index array) of an array or of every array of a dict."""
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


def _printer(verbose: bool):
    def say(row):
        if verbose:
            from rich.console import Console

            detail = f"{row.get('size_bytes', 0) / 1024:.1f} KB" if row["status"] == "ok" else row.get("reason", "")[:200]
            Console(stderr=True, highlight=False).print(f"export {row['name']:<13} {row['status']:<11} {detail}")
    return say


def _try(fn) -> str | None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc).strip()[:500]}"
    return None


def _not_done(name: str, status: str, reason: str) -> dict[str, Any]:
    fmt = "tflite" if name in TFLITE_VARIANTS else name
    return {"name": name, "format": fmt, "file": None, "status": status, "reason": reason}


def _recommend(report: ExportReport) -> str | None:
    base = report.variants.get("float32")
    if not base or base["status"] != "ok":
        return None
    ok = [v for v in report.variants.values() if v["format"] == "tflite" and v["status"] == "ok"]
    metric = report.metric
    if base.get(metric) is not None:
        if metric == "accuracy":
            ok = [v for v in ok if v.get(metric) is not None and v[metric] >= base[metric] - QUANT_ACCURACY_TOLERANCE]
        else:
            ok = [v for v in ok if v.get(metric) is not None and v[metric] <= base[metric] * 1.01 + 1e-9]
    return min(ok, key=lambda v: v["size_bytes"])["name"] if ok else None


# ---------------------------------------------------------------- conversion


def _export_saved_model(model, path: Path):
    if path.exists():
        shutil.rmtree(path)
    model.export(str(path), format="tf_saved_model", verbose=False)


@dataclass
class _TFLitePlan:
    """What the TFLite converter gets: a SavedModel, why it differs from the model, input preparation."""

    source: Path
    notes: list[str] = field(default_factory=list)
    prepare: Any = None                 # raw inputs -> what the TFLite file takes (token ids)
    text_input: dict | None = None


def _tflite_plan(model, saved: Path, tmp: Path, out: Path) -> _TFLitePlan:
    """Make the model LiteRT-friendly without changing what it computes.

    In-graph `TextVectorization` needs TensorFlow string ops LiteRT lacks: when the whole model does
    not convert, the TFLite files start at the token ids (the vocabulary is written beside them for
    the app's tokenizer). Recurrent layers are unrolled (same weights) where the sequence length is
    fixed, since LiteRT has no TensorList ops for their loops."""
    plan, target = _TFLitePlan(saved), model
    split = _text_vectorizer_split(model)
    if split:
        vectorizer, tokens_model = split
        try:  # the vectorizer alone: its converter error is the precise reason
            import keras

            _export_saved_model(keras.Model(model.inputs[0], vectorizer.output), tmp / "vectorizer")
            convert_tflite(tmp / "vectorizer", "float32")
        except Exception as exc:  # noqa: BLE001 - expected: no string ops in LiteRT
            target = tokens_model
            plan.prepare = lambda x: _tokenize(vectorizer, x)
            plan.text_input = _write_vectorizer(vectorizer, out)
            shape = (None, *tokens_model.inputs[0].shape[1:])
            what = (f"token ids {shape}" if plan.text_input["output_mode"] == "int" else
                    f"a {plan.text_input['output_mode']} vector {shape} over the n-grams of vocabulary.txt")
            plan.notes.append(f"takes {what} ({tokens_model.inputs[0].dtype}): the in-graph TextVectorization "
                              f"does not convert ({_short_error(exc)}); latency excludes tokenization")
    target = _unroll_rnns(target, plan.notes)
    if target is not model:
        plan.source = tmp / "tflite_source"
        _export_saved_model(target, plan.source)
    return plan


def _text_vectorizer_split(model):
    """(vectorizer, model from its token ids to the output) when a TextVectorization reads the input."""
    import keras

    if len(model.inputs) != 1:
        return None
    for layer in model.layers:
        if isinstance(layer, keras.layers.TextVectorization):
            try:
                if layer.input is model.inputs[0] or layer.input.name == model.inputs[0].name:
                    return layer, keras.Model(layer.output, model.outputs[0])
            except (AttributeError, ValueError):
                return None
    return None


def _tokenize(vectorizer, x) -> np.ndarray:
    import tensorflow as tf

    x = np.asarray(x).astype(str)
    return np.concatenate([np.asarray(vectorizer(tf.constant(x[i:i + 4096]))) for i in range(0, len(x), 4096)])


def _write_vectorizer(vectorizer, out: Path) -> dict[str, Any]:
    """`vocabulary.txt` (token id or n-gram index = line number) and `text_vectorization.json` for the
    app's tokenizer."""
    vocabulary = [str(t) for t in vectorizer.get_vocabulary()]
    (out / "vocabulary.txt").write_text("\n".join(t.replace("\n", " ") for t in vocabulary) + "\n")
    config = {k: v for k, v in vectorizer.get_config().items()
              if k in ("standardize", "split", "ngrams", "output_mode", "output_sequence_length", "max_tokens")}
    info = {**config, "vocabulary_file": "vocabulary.txt", "vocabulary_size": len(vocabulary)}
    if config.get("output_mode") == "int":
        info["ids"] = "line number in vocabulary.txt; 0 is padding, 1 an unknown token"
    else:  # a bag of n-grams (the text_ngrams block): one input per vocabulary line
        info["vector"] = ("index = line number in vocabulary.txt (n-grams of the split tokens joined by one "
                          "space); index 0 counts every n-gram not in the vocabulary")
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
        if isinstance(layer, keras.layers.RNN) and not layer.unroll and fixed_length(layer):
            steps.add(fixed_length(layer))
            return layer.__class__.from_config({**layer.get_config(), "unroll": True})
        if isinstance(layer, keras.layers.Bidirectional) and fixed_length(layer):
            steps.add(fixed_length(layer))
            cfg = layer.get_config()
            for key in ("layer", "backward_layer"):
                if cfg.get(key):
                    cfg[key]["config"]["unroll"] = True
            return keras.layers.Bidirectional.from_config(cfg)
        return layer  # shared, weights and state included

    if not any(isinstance(l, (keras.layers.RNN, keras.layers.Bidirectional)) for l in _all_layers(model)):
        return model
    try:
        clone = keras.models.clone_model(model, clone_function=unroll)
        if not steps:
            return model  # unknown sequence lengths: the converter will say why
        clone.set_weights(model.get_weights())
    except Exception as exc:  # noqa: BLE001 - convert the rolled graph; the converter will say why
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


def convert_tflite(saved_model_dir: str | Path, variant: str, x_representative=None, *, int8_io: bool = False,
                   select_tf_ops: bool = False) -> bytes:
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
        if x_representative is None or _n(x_representative) == 0:
            raise ExportError("int8 conversion needs x_representative (rows of training data)")
        sample = x_representative
        arrays = list(sample.values()) if isinstance(sample, dict) else [sample]
        float_input = all(np.issubdtype(a.dtype, np.floating) for a in arrays)

        def one(a, i):
            row = a[i:i + 1]
            return row.astype("float32") if np.issubdtype(a.dtype, np.floating) else row.astype(str).astype(bytes) \
                if a.dtype.kind in "OU" else row

        def representative():
            for i in range(_n(sample)):
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
    with _native_stderr_quiet():
        return c.convert()


@contextmanager
def _native_stderr_quiet():
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


def _flex_probe(saved: Path, x_sample: np.ndarray) -> str | None:
    """Would TF Select (Flex) ops make it convert, and can the LiteRT interpreter run the result?"""
    try:
        content = convert_tflite(saved, "float32", select_tf_ops=True)
    except Exception as exc:  # noqa: BLE001
        return f"not even with TF Select ops ({_short_error(exc)})"
    try:
        TFLiteRunner(content=content)(x_sample)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc)
        ops = sorted(set(re.findall(r"\((Flex\w+)\)", msg))) or ["Flex ops"]
        return (f"it converts with TF Select ops, but the LiteRT interpreter cannot run them "
                f"({', '.join(ops)} failed to prepare: no Flex delegate in ai-edge-litert)")
    return "it converts and runs with TF Select ops (not exported: phones would need the Flex delegate)"


def _short_error(exc: Exception) -> str:
    msg = str(exc)
    if m := re.search(r"TF Select ops: ([^\n]+)", msg):
        return f"needs TensorFlow ops outside LiteRT's built-in set: {m.group(1).strip()}"
    if "Lowering tensor list ops is failed" in msg:
        return ("a recurrent loop over a sequence of unknown length (TensorList ops) cannot be lowered to "
                "LiteRT built-in ops; give the input a fixed sequence length so it can be unrolled")
    errors = [re.sub(r"^.*?error: ", "", line).strip() for line in msg.splitlines() if "error:" in line]
    errors = [e for e in errors if e and not e.startswith("failed while converting")]
    return (errors[-1] if errors else msg.strip().splitlines()[-1] if msg.strip() else type(exc).__name__)[:400]


def _converter_reason(exc: Exception, flex: str | None) -> str:
    reason = f"converter: {_short_error(exc)}"
    return f"{reason}; {flex}" if flex else reason


# ---------------------------------------------------------------- running the files


def _interpreter(path: Path | None = None, content: bytes | None = None, threads: int | None = None,
                 xnnpack: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with _native_stderr_quiet():
        if path is not None:
            return Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
        return Interpreter(model_content=content, num_threads=threads, experimental_op_resolver_type=resolver)


class TFLiteRunner:
    """Runs a `.tflite` file with the LiteRT interpreter: float (or str) in, float out, any batch size.

    `x` is an array, or a dict keyed by the model's input names (table columns)."""

    def __init__(self, path: str | Path | None = None, threads: int | None = 1, content: bytes | None = None,
                 xnnpack: bool = True):
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
        self.batch = None

    def _resize(self, n: int):
        if n != self.batch:
            if not self.fixed_batch:
                for d in self.inputs.values():
                    self.interp.resize_tensor_input(d["index"], [n, *d["shape"][1:]])
            self.interp.allocate_tensors()
            self.batch = n

    def __call__(self, x) -> np.ndarray:
        n = _n(x)
        if self.fixed_batch and n != self.fixed_batch:
            step = self.fixed_batch
            return np.concatenate([self(_rows(x, slice(i, i + step))) for i in range(0, n, step)])
        self._resize(n)
        if isinstance(x, dict):
            missing = [k for k in self.inputs if k not in x]
            if missing:
                raise ExportError(f"the TFLite file takes inputs {', '.join(self.inputs)}; {missing[0]!r} is missing")
            values = {k: x[k] for k in self.inputs}
        else:
            if len(self.inputs) != 1:
                raise ExportError(f"the TFLite file takes {len(self.inputs)} inputs ({', '.join(self.inputs)}): pass a dict")
            values = {next(iter(self.inputs)): x}
        for key, value in values.items():
            d = self.inputs[key]
            dtype, (scale, zero) = d["dtype"], d["quantization"]
            value = np.asarray(value)
            if value.dtype.kind in "OU":
                value = value.astype(str).astype(bytes)
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
        return {"input_dtype": "/".join(inputs), "output_dtype": np.dtype(self.output["dtype"]).name,
                "tensor_types": dict(sorted(counts.items()))}


def _tensor_input(x):
    """Numpy string arrays (which `model.predict` rejects) as string tensors, in arrays and dicts."""
    if isinstance(x, dict):  # Keras takes no mix of arrays and tensors in one dict
        import tensorflow as tf

        return {k: tf.constant(v.astype(str) if v.dtype.kind in "OUS" else v) for k, v in x.items()}
    if x.dtype.kind in "OUS":
        import tensorflow as tf

        return tf.constant(x.astype(str))
    return x


class _KerasRunner:
    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        return np.asarray(self.model.predict(_tensor_input(x), batch_size=max(_n(x), 1), verbose=0), "float32")


class _SavedModelRunner:
    def __init__(self, path: Path):
        import tensorflow as tf

        self.tf, self.loaded = tf, tf.saved_model.load(str(path))  # keep it: `serve` needs its variables

    def __call__(self, x):
        x = _tensor_input(x)
        if isinstance(x, dict):
            x = {k: self.tf.constant(v) for k, v in x.items()}
        return np.asarray(self.loaded.serve(self.tf.constant(x) if not isinstance(x, dict) else x), "float32")


def _predict_keras(model, x, batch_size: int) -> np.ndarray:
    return np.asarray(model.predict(_tensor_input(x), batch_size=batch_size, verbose=0), "float32")


def _keras_call_latency(model, x, runs: int) -> dict[str, float]:
    """A direct `model(x)` call, the cheapest way to run one sample in Keras (for comparison)."""
    n = _n(x)
    times = _time_calls(lambda i: model(_tensor_input(_rows(x, slice(i % n, i % n + 1))), training=False), runs)
    return {"latency_call_p50_ms": float(np.median(times)), "latency_call_p95_ms": float(np.percentile(times, 95))}


def _time_calls(fn, runs: int, warmup: int = 3) -> np.ndarray:
    for i in range(warmup):
        fn(i)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times[i] = (time.perf_counter() - start) * 1000
    return times


class _Evaluator:
    """Runs one exported file over the held-out set and compares it with the Keras predictions."""

    def __init__(self, task, y, reference, x, batch_size, latency_runs):
        self.task, self.y, self.reference, self.x = task, y, reference, x
        self.batch_size, self.latency_runs = batch_size, latency_runs
        spread = float(np.std(reference)) if task != "classification" else 0.0
        self.regression_tolerance = 0.01 * (spread or 1.0)

    def run(self, name: str, fmt: str, path: Path, runner, out: Path, threads: int | None = 1) -> dict[str, Any]:
        row: dict[str, Any] = {"name": name, "format": fmt, "file": str(path.relative_to(out)), "status": "ok",
                               "reason": None, "size_bytes": _size(path)}
        try:
            if runner is None:
                runner = TFLiteRunner(path, threads)
                row.update(runner.facts())
            try:
                row.update(self._measure(runner))
            except RuntimeError as exc:
                if not isinstance(runner, TFLiteRunner) or "XNNPACK" not in str(exc):
                    raise
                row.update(self._measure(TFLiteRunner(path, threads, xnnpack=False)))
                row["reason"] = (f"the XNNPACK delegate refused the file ({str(exc).strip()[:120]}); measured "
                                 f"with LiteRT's built-in kernels")
        except Exception as exc:  # noqa: BLE001 - the file exists but cannot run: say so, keep going
            row.update(status="failed", reason=f"running the file: {type(exc).__name__}: {str(exc)[:400]}")
        return row

    def _measure(self, runner) -> dict[str, Any]:
        x, bs, n = self.x, self.batch_size, _n(self.x)
        runner(_pad(_rows(x, slice(0, bs)), bs))  # warm-up: allocation, tracing
        start = time.perf_counter()
        preds = [runner(_pad(_rows(x, slice(i, i + bs)), bs))[:min(bs, n - i)] for i in range(0, n, bs)]
        seconds = time.perf_counter() - start
        pred = np.concatenate(preds).reshape(self.reference.shape)
        times = _time_calls(lambda i: runner(_rows(x, slice(i % n, i % n + 1))), self.latency_runs)
        row = {"latency_p50_ms": float(np.median(times)), "latency_p95_ms": float(np.percentile(times, 95)),
               "throughput_per_s": n / seconds,
               "max_abs_diff": float(np.max(np.abs(pred - self.reference)))}
        if self.task == "classification":
            row["agreement"] = float(np.mean(_classes(pred) == _classes(self.reference)))
        else:
            diff = np.abs(pred - self.reference).reshape(n, -1).max(axis=1)
            row["agreement"] = float(np.mean(diff <= self.regression_tolerance))
        if self.y is not None:
            row.update(score(self.task, self.y, pred))
        return row


def _classes(p: np.ndarray) -> np.ndarray:
    p = p.reshape(len(p), -1)
    return (p[:, 0] > 0.5).astype(int) if p.shape[1] == 1 else p.argmax(axis=1)


def _pad(x, n: int):
    """A full batch: the last short batch is padded with its own rows (outputs are cut back)."""
    if isinstance(x, dict):
        return {k: _pad(v, n) for k, v in x.items()}
    if len(x) >= n or not len(x):
        return x
    return np.concatenate([x, np.resize(x, (n - len(x), *x.shape[1:]))])


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


# ---------------------------------------------------------------- exporting a search's trials


def export_result(result, out_dir: str | Path, *, trial: int | str | None = None, data=None,
                  formats: str | Iterable[str] | None = None, representative_samples: int = 200,
                  int8_io: bool = False, select_int8_top_k: int | None = None, distill: bool = False,
                  student: int | dict | Any | None = None, distill_epochs: int | None = None,
                  space=None, register: bool = True, registered_name: str | None = None,
                  batch_size: int = 32, eval_samples: int | None = None, latency_runs: int = 100,
                  threads: int | None = 1, verbose: bool = True) -> ExportReport:
    """Export a search's best trial (or trial number `trial`, or `trial="pareto"`: every member of the
    accuracy/size Pareto front) with `export_model`, log it to the search's MLflow parent run
    under `export/` and register it in the MLflow Model Registry (name: the study's, or
    `registered_name`).

    `data` is the search's `Dataset` (default: the one the result was fitted on, or the built-in
    set the study records); its fingerprint must match the study's. `select_int8_top_k=k` ranks
    the k best trials by their full-integer int8 TFLite score on the held-out data and exports the
    winner. `distill=True` trains a smaller `student` (default: the smallest trial of the Pareto
    front; a trial number; a parameter dict for the search space; or a `keras.Model`) on the
    chosen model's soft targets and exports it to `out_dir/student`. A trial without a stored
    model is rebuilt from its parameters and retrained with the search's settings (needs the space:
    the recorded path, or `space`).
    """
    formats = parse_formats(formats)
    if select_int8_top_k is not None and select_int8_top_k < 1:
        raise ExportError(f"select_int8_top_k must be at least 1, not {select_int8_top_k}")
    if select_int8_top_k and trial is not None:
        raise ExportError("give either a trial or int8 selection of the top trials, not both")
    data = search_data(result, data)
    source = _TrialModels(result, data, space, verbose)
    common = dict(data=data, formats=formats, representative_samples=representative_samples, int8_io=int8_io,
                  batch_size=batch_size, eval_samples=eval_samples, latency_runs=latency_runs, threads=threads,
                  verbose=verbose, seed=source.seed)
    out = Path(out_dir)
    if trial == "pareto":
        members = pareto_front(result.study)
        reports = [_export_trial(source, t, out / f"trial-{t.number:03d}", common) for t in members]
        summary = ExportReport(str(out), data.task, reports[0].metric, reports[0].eval_samples, batch_size, threads,
                               meta={"title": f"{result.study.study_name}: Pareto front (objective vs weights)",
                                     "study": result.study.study_name, "members": ", ".join(str(t.number) for t in members)})
        summary.extra["pareto"] = {str(r.meta["trial"]): r.to_dict() for r in reports}
        out.mkdir(parents=True, exist_ok=True)
        (out / "export_report.json").write_text(json.dumps(summary.to_dict(), indent=2, default=_json_default))
        (out / "REPORT.md").write_text(_pareto_markdown(summary, reports))
        if register:
            for r in reports:
                r.meta["registered"] = _register(result, r, registered_name, f"export/trial-{r.meta['trial']:03d}")
                r.write()
        _log_to_mlflow(result, out, {f"trial{r.meta['trial']}": r for r in reports})
        return summary

    selection = None
    if select_int8_top_k:
        selection = select_by_int8(source, select_int8_top_k, representative_samples, int8_io, eval_samples)
        chosen = result.study.trials[selection["chosen"]]
    elif trial is None:
        try:
            chosen = result.best_trial  # feasible; refuses a multi-objective study with the reason
        except ValueError as exc:
            raise ExportError(f"{exc}; or export trial=N (CLI: --trial N) or every Pareto member "
                              f"(trial='pareto', CLI: --pareto)") from None
    else:
        chosen = _get_trial(result.study, trial)
    report = _export_trial(source, chosen, out, common)
    if selection:
        report.extra["selection"] = selection
    if distill or student is not None:
        from .distill import distill_student

        student_model, student_meta = distill_student(source, source.model(chosen), student, epochs=distill_epochs,
                                                      exclude=chosen.number)
        s_report = export_model(student_model, out / "student", meta=student_meta, **common)
        report.extra["student"] = s_report.to_dict()
    if register:
        report.meta["registered"] = _register(result, report, registered_name, "export")
    report.write()
    parts = {"": report}
    if "student" in report.extra:
        parts["student"] = s_report
    _log_to_mlflow(result, out, parts)
    return report


def _export_trial(source: "_TrialModels", t, out: Path, common: dict) -> ExportReport:
    model = source.model(t)
    meta = {"title": f"{source.result.study.study_name} trial {t.number}", "study": source.result.study.study_name,
            "trial": t.number, "objective": source.result.objective, "value": t.values[0] if t.values else None,
            "model_source": source.origin.get(t.number, "stored"), "params": dict(t.user_attrs.get("params", t.params))}
    return export_model(model, out, meta=meta, **common)


def _get_trial(study, number: int):
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise ExportError(f"study {study.study_name!r} has no trial {number} (trials 0-{max(trials, default=-1)})")
    t = trials[number]
    if t.state.name != "COMPLETE":
        raise ExportError(f"trial {number} is {t.state.name}, not COMPLETE: only completed trials can be exported")
    return t


def pareto_front(study) -> list:
    """Completed trials no other trial beats on both the objective and the weight count, smallest first.

    A multi-objective study's own front (`study.best_trials`) when it has several objectives."""
    import optuna

    if len(study.directions) > 1:
        front = study.best_trials
    else:
        done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.user_attrs.get("param_count") is not None
                and feasible(t)]
        if not done:
            raise ExportError(f"study {study.study_name!r} has no completed trial with a weight count")
        sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1

        def beats(a, b):
            va, vb, sa, sb = sign * a.value, sign * b.value, a.user_attrs["param_count"], b.user_attrs["param_count"]
            return va >= vb and sa <= sb and (va > vb or sa < sb)

        front = [t for t in done if not any(beats(o, t) for o in done)]
    return sorted(front, key=lambda t: (t.user_attrs.get("param_count") or 0, t.number))


def _pareto_markdown(summary: ExportReport, reports: list[ExportReport]) -> str:
    lines = [f"# Export report — {summary.meta['title']}", ""]
    for r in reports:
        lines += [f"## Trial {r.meta['trial']} ({r.meta['objective']} {_fmt(r.meta['value'])}, "
                  f"{r.meta['param_count']} weights) — `trial-{r.meta['trial']:03d}/`", "", *variant_table(r), ""]
    return "\n".join(lines)


def search_data(result, data=None):
    """The search's data: given, kept on the result, or the built-in set the study records.

    Checked against the study's data fingerprint, so files are never scored on other data."""
    from .data import BUILTIN, load_data

    data = data if data is not None else result.dataset
    params = run_params(result)
    if data is None:
        name = params.get("data")
        if name not in BUILTIN:
            raise ExportError(f"exporting study {result.study.study_name!r} needs its data to evaluate and calibrate "
                              f"the files: pass data=Dataset (CLI: --data ...); the study was run on {name!r}")
        split, seed = recorded_split(params)
        data = load_data(name, validation_split=split, seed=seed)
    expected = result.study.user_attrs.get("data_fingerprint")
    if expected and data.fingerprint() != expected:
        raise ExportError(f"data {data.name!r} is not the data study {result.study.study_name!r} was run on "
                          f"(fingerprint {data.fingerprint()} != {expected}); use the same file, "
                          f"--validation-split and --seed as the search")
    return data


def run_params(result) -> dict[str, str]:
    """Settings the search logged on its MLflow parent run (space path, data name, seed, epochs...)."""
    if not result.mlflow_run_id:
        return {}
    from mlflow.tracking import MlflowClient

    try:
        return dict(MlflowClient(result.tracking_uri).get_run(result.mlflow_run_id).data.params)
    except Exception:  # noqa: BLE001 - a missing run only costs the recorded defaults
        return {}


def recorded_split(params: dict[str, str]) -> tuple[float, int]:
    """(validation_split, seed) that reproduce the search's split of its data."""
    seed = int(params["seed"]) if params.get("seed") not in (None, "None") else 0
    try:
        n_train, n_val = int(params["train_samples"]), int(params["val_samples"])
        return n_val / (n_train + n_val), seed
    except (KeyError, ValueError):
        return 0.2, seed


class _TrialModels:
    """Trained models of a search's trials: downloaded from MLflow, or rebuilt and retrained."""

    def __init__(self, result, data, space=None, verbose: bool = True):
        self.result, self.data, self.verbose = result, data, verbose
        self.params = run_params(result)
        self.seed = recorded_split(self.params)[1]
        self._space, self._space_arg = None, space
        self.origin: dict[int, str] = {}
        self._cache: dict[int, Any] = {}

    @property
    def space(self):
        from .space import load_space

        if self._space is None:
            spec = self._space_arg or self.params.get("space")
            if spec is None:
                raise ExportError("the search's space is not recorded: pass space=PATH (CLI: --space)")
            try:
                space = load_space(spec)
            except Exception as exc:  # noqa: BLE001
                raise ExportError(f"cannot load the search's space {spec!r} to rebuild a trial: {exc}; "
                                  f"pass space=PATH (CLI: --space)") from None
            expected = self.result.study.user_attrs.get("space_fingerprint")
            if expected and space.fingerprint() != expected:
                raise ExportError(f"space {spec!r} has changed since study {self.result.study.study_name!r} ran "
                                  f"(fingerprint {space.fingerprint()} != {expected}); pass the original as space=PATH")
            self._space = space
        return self._space

    def model(self, t):
        """The trial's trained model: its stored `.keras` artifact, else retrained from its parameters."""
        import keras

        if t.number in self._cache:
            return self._cache[t.number]
        artifact = t.user_attrs.get("model_artifact")
        if artifact and t.user_attrs.get("mlflow_run_id"):
            from mlflow.tracking import MlflowClient

            dst = tempfile.mkdtemp(prefix="automl-model-")
            path = MlflowClient(self.result.tracking_uri).download_artifacts(t.user_attrs["mlflow_run_id"], artifact, dst)
            model = keras.saving.load_model(path, safe_mode=True)
            self.origin[t.number] = "stored"
        else:
            model = self.retrain(t)
            self.origin[t.number] = "retrained"
        self._cache[t.number] = model
        return model

    def config(self, t):
        import optuna

        return self.space.sample(optuna.trial.FixedTrial(dict(t.params)))

    def retrain(self, t):
        """Only best-so-far trials keep a model; others are rebuilt and trained again the same way
        (same seed, epochs and early stopping), so the model matches the trial up to nondeterminism."""
        import keras

        from .builder import build_model
        from .training import training_settings
        from .trial import TrialSettings, fit_model

        try:
            config = self.config(t)
        except ExportError as exc:
            raise ExportError(f"trial {t.number} has no stored model (only trials that were best so far keep one) "
                              f"and cannot be rebuilt: {exc}") from None
        if self.verbose:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(f"trial {t.number} has no stored model: retraining it "
                                                        f"from its parameters")
        p = self.params
        seed = None if p.get("seed") in (None, "None") else int(p["seed"])
        patience = None if p.get("patience") in (None, "None") else int(p["patience"])
        keras.backend.clear_session()
        if seed is not None:
            keras.utils.set_random_seed(seed + t.number)
        settings = TrialSettings(objective=self.result.objective, direction=self.result.study.directions[0].name.lower(),
                                 epochs=int(p.get("epochs", t.user_attrs.get("epochs_run") or 10)),
                                 patience=patience, seed=seed)
        model = build_model(config.architecture, self.data)
        fit_model(model, self.data, training_settings(config.training), settings, [])
        return model


def select_by_int8(source: _TrialModels, k: int, representative_samples: int = 200, int8_io: bool = False,
                   eval_samples: int | None = None) -> dict[str, Any]:
    """Rank the k best completed trials by their full-integer int8 TFLite score on held-out data
    (quantization can reorder close trials); returns the table and the chosen trial number."""
    import optuna

    study, data = source.result.study, source.data
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        raise ExportError(f"study {study.study_name!r} has no completed trial")
    done = [t for t in done if feasible(t)]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    top = sorted(done, key=lambda t: (-t.values[0] if maximize else t.values[0], t.number))[:k]
    rng = np.random.default_rng(source.seed)
    x_eval, y_eval = data.x_val, data.y_val
    if eval_samples and len(y_eval) > eval_samples:
        keep = np.sort(rng.choice(len(y_eval), eval_samples, replace=False))
        x_eval, y_eval = _rows(x_eval, keep), y_eval[keep]
    n_train = len(data.y_train)
    rep = _rows(data.x_train, rng.choice(n_train, min(representative_samples, n_train), replace=False))
    metric = "accuracy" if data.task == "classification" else "mae"
    rows = []
    for t in top:
        model = source.model(t)
        row = {"trial": t.number, "value": t.values[0]}
        with tempfile.TemporaryDirectory(prefix="automl-select-") as tmp:
            saved = Path(tmp) / "saved_model"
            _export_saved_model(model, saved)
            plan = _tflite_plan(model, saved, Path(tmp), Path(tmp))
            prep = plan.prepare or (lambda x: x)
            for variant in ("float32", "int8"):
                try:
                    runner = TFLiteRunner(content=convert_tflite(plan.source, variant, prep(rep), int8_io=int8_io))
                    xs = prep(x_eval)
                    pred = np.concatenate([runner(_rows(xs, slice(i, i + 256))) for i in range(0, len(y_eval), 256)])
                    row[variant] = score(data.task, y_eval, pred)[metric]
                except Exception as exc:  # noqa: BLE001 - a trial that cannot be quantized ranks last
                    row[variant], row[f"{variant}_reason"] = None, _short_error(exc)
        rows.append(row)
        if source.verbose:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(
                f"int8 selection: trial {t.number} value {t.values[0]:.4f} int8 {metric} {_fmt(row['int8'])}")
    ranked = [r for r in rows if r["int8"] is not None]
    if not ranked:
        raise ExportError(f"none of the top {k} trials converts to full-integer int8: {rows[0].get('int8_reason')}")
    better = max if metric == "accuracy" else min
    best = better(r["int8"] for r in ranked)
    chosen = next(r for r in ranked if r["int8"] == best)  # ties: the better float trial
    return {"ranked_by": f"int8 TFLite {metric}", "candidates": rows, "chosen": chosen["trial"]}


def score(task: str, y, pred: np.ndarray) -> dict[str, float]:
    """The task metric of predictions against labels: accuracy, or MAE and RMSE."""
    y = np.asarray(y)
    if task == "classification":
        return {"accuracy": float(np.mean(_classes(pred) == y.reshape(-1)))}
    err = pred.reshape(len(pred), -1)[:, 0] - y.reshape(len(y), -1)[:, 0].astype("float32")
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2)))}


# ---------------------------------------------------------------- MLflow


def _log_to_mlflow(result, out: Path, reports: dict[str, ExportReport]):
    """Files, reports and figures onto the search's parent run (metrics `export.[part.]variant.key`)."""
    if not result.mlflow_run_id:
        return
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for part, rep in reports.items():
        prefix = f"export.{part}." if part else "export."
        for name, v in rep.variants.items():
            for key in ("size_bytes", rep.metric, "agreement", "max_abs_diff", "latency_p50_ms", "latency_p95_ms",
                        "throughput_per_s"):
                if v.get(key) is not None:
                    metrics[f"{prefix}{name}.{key}"] = float(v[key])
            tags[f"automl.{prefix}{name}"] = v["status"] if v["status"] == "ok" else f"{v['status']}: {v['reason']}"
        if rep.recommended:
            tags[f"automl.{prefix}recommended"] = rep.variants[rep.recommended]["file"]
    client, now = MlflowClient(result.tracking_uri), int(time.time() * 1000)
    items = [Metric(k, v, now, 0) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        client.log_batch(result.mlflow_run_id, metrics=items[i:i + 1000])
    client.log_batch(result.mlflow_run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
    client.log_artifacts(result.mlflow_run_id, str(out), "export")


def _register(result, report: ExportReport, name: str | None, artifact_path: str) -> dict[str, Any] | None:
    """A Model Registry version whose source is the exported folder on the parent run."""
    if not result.mlflow_run_id:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(result.tracking_uri)
    name = name or result.study.study_name
    try:
        client.create_registered_model(name, description="automl exports: .keras, SavedModel and TFLite variants")
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    tags = {"automl.study": result.study.study_name, "automl.trial": str(report.meta.get("trial")),
            "automl.recommended": report.variants[report.recommended]["file"] if report.recommended else "none"}
    if report.recommended:
        tags[f"automl.{report.metric}"] = str(report.variants[report.recommended].get(report.metric))
    version = client.create_model_version(name, source=f"runs:/{result.mlflow_run_id}/{artifact_path}",
                                          run_id=result.mlflow_run_id, tags=tags,
                                          description=f"trial {report.meta.get('trial')} exported by automl")
    return {"name": name, "version": int(version.version)}
