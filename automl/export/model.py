"""`export_model`: write one Keras model in each format, run every file on held-out data, report."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError
from .convert import (
    FILES,
    TFLITE_VARIANTS,
    TFLitePlan,
    convert_tflite,
    converter_reason,
    export_saved_model,
    flex_probe,
    parse_formats,
    tflite_plan,
)
from .evaluate import Evaluator, keras_call_latency, note_int8_loss, recommend
from .report import ExportReport
from .runners import KerasRunner, SavedModelRunner, n_samples, predict_keras, rows

LABELS_FILE = "labels.txt"  # classifiers: the class of output i on line i + 1


def export_model(
    model,
    out_dir: str | Path,
    *,
    data=None,
    x_eval=None,
    y_eval=None,
    x_representative=None,
    task: str | None = None,
    formats: str | Iterable[str] | None = None,
    representative_samples: int = 200,
    int8_io: bool = False,
    batch_size: int = 32,
    eval_samples: int | None = None,
    latency_runs: int = 100,
    threads: int | None = 1,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    verbose: bool = False,
    compression: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> ExportReport:
    """Write `model` in each format to `out_dir`, run every file on held-out data, write the report.

    `data` (an `automl.Dataset`) supplies the held-out set (`x_val`, `y_val`), the representative
    sample for int8 calibration (`representative_samples` rows of `x_train`) and the task. Without
    it pass `x_eval`, `y_eval` (labels optional: without them only agreement is measured) and
    `x_representative`; inputs are arrays, or dicts of column arrays for a model with one input
    per table column. Returns the `ExportReport`; it is also written as `export_report.json`
    and `REPORT.md` in `out_dir`.

    `compression` (a space's `compression:` keys, e.g. `{"sparsity": 0.8, "qat": True, "epochs": 2}`)
    fine-tunes a copy on `data`'s training rows (at `training`'s batch size and learning rate / 10)
    and adds the rows `pruned_float32`, `pruned_int8` and `qat_int8` (see compressed.py).
    """
    import keras

    formats = parse_formats(formats)
    if not isinstance(model, keras.Model):
        raise ExportError(f"model must be a keras.Model, not {type(model).__name__}")
    if len(model.outputs) != 1:
        raise ExportError(f"export handles models with one output; this one has {len(model.outputs)}")
    if batch_size < 1 or latency_runs < 1 or representative_samples < 1:
        raise ExportError(
            "batch_size, latency_runs and representative_samples must be at least 1 "
            f"(got {batch_size}, {latency_runs}, {representative_samples})"
        )
    if data is not None:
        x_eval = data.x_val if x_eval is None else x_eval
        y_eval = data.y_val if y_eval is None else y_eval
        x_representative = data.x_train if x_representative is None else x_representative
        task = task or data.task
    if x_eval is None:
        raise ExportError("export needs held-out inputs to evaluate the files: pass data=Dataset or x_eval")
    x_eval = check_inputs(model, x_eval, "x_eval")
    n_eval = n_samples(x_eval)
    if y_eval is not None:
        y_eval = np.asarray(y_eval)
        if len(y_eval) != n_eval:
            raise ExportError(f"y_eval has {len(y_eval)} samples but x_eval has {n_eval}")
    rng = np.random.default_rng(seed)
    if eval_samples and n_eval > eval_samples:
        keep = np.sort(rng.choice(n_eval, eval_samples, replace=False))
        x_eval, y_eval = rows(x_eval, keep), (y_eval[keep] if y_eval is not None else None)
    if x_representative is not None:
        x_representative = check_inputs(model, x_representative, "x_representative")
        if n_samples(x_representative) > representative_samples:
            keep = rng.choice(n_samples(x_representative), representative_samples, replace=False)
            x_representative = rows(x_representative, keep)
    out_units = model.outputs[0].shape[-1]
    task = task or ("classification" if out_units and out_units > 1 else "regression")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in formats:  # a rerun must not leave a stale file of a variant that now fails
        stale = out / FILES[name]
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
    report = ExportReport(
        str(out),
        task,
        "accuracy" if task == "classification" else "mae",
        n_samples(x_eval),
        batch_size,
        threads,
        meta=dict(meta or {}),
    )
    report.meta.setdefault("param_count", int(model.count_params()))
    _write_labels(out, data if task == "classification" else None, report)
    reference = predict_keras(model, x_eval, batch_size)
    ev = Evaluator(task, y_eval, reference, x_eval, batch_size, latency_runs)
    say = _printer(verbose)

    if "keras" in formats:
        path = out / FILES["keras"]
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        report.variants["keras"] = ev.run("keras", "keras", path, KerasRunner(loaded), out)
        report.variants["keras"].update(keras_call_latency(loaded, x_eval, latency_runs))
        say(report.variants["keras"])
    with tempfile.TemporaryDirectory(prefix="automl-export-") as tmp:
        saved = out / FILES["saved_model"] if "saved_model" in formats else Path(tmp) / "saved_model"
        saved_error = _try(lambda: export_saved_model(model, saved))
        if "saved_model" in formats:
            if saved_error:
                report.variants["saved_model"] = _not_done("saved_model", "unsupported", saved_error)
            else:
                report.variants["saved_model"] = ev.run(
                    "saved_model", "saved_model", saved, SavedModelRunner(saved), out
                )
            say(report.variants["saved_model"])
        tflite = [v for v in formats if v in TFLITE_VARIANTS]
        plan = TFLitePlan(saved)
        if tflite and not saved_error:
            plan = tflite_plan(model, saved, Path(tmp), out)
            if plan.prepare:  # token ids in: score the files on the tokenized held-out texts
                ev = Evaluator(task, y_eval, reference, plan.prepare(x_eval), batch_size, latency_runs)
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
                row = _not_done(
                    variant,
                    "skipped",
                    "full-integer int8 needs a representative sample of the "
                    "training data (data=Dataset or x_representative)",
                )
            else:
                try:
                    content = convert_tflite(source, variant, x_representative, int8_io=int8_io)
                except Exception as exc:
                    if flex_reason is None:
                        flex_reason = flex_probe(source, ev.x)
                    row = _not_done(variant, "unsupported", converter_reason(exc, flex_reason))
                else:
                    path.write_bytes(content)
                    row = ev.run(variant, "tflite", path, None, out, threads=threads)
            report.variants[variant] = row
            say(row)
        if compression:  # fine-tuning needs Keras: imported here, so `import automl.export` stays light
            from .compressed import add_compressed_variants

            add_compressed_variants(
                model, report, ev, data, compression, training or {}, x_representative, int8_io, threads, say
            )
    note_int8_loss(report.variants, report.metric)
    report.recommended = recommend(report.variants, report.metric)
    report.write()
    return report


def _write_labels(out: Path, data, report: ExportReport) -> None:
    """`labels.txt`: the class of each output, one per line, as TFLite apps read it (the files
    output class indices; without it a phone app cannot tell 'spam' from 'ham'). Removed when the
    export has no class names, so a rerun into the same folder leaves none stale."""
    path = out / LABELS_FILE
    names = getattr(data, "class_names", None)
    if not names:
        path.unlink(missing_ok=True)
        return
    path.write_text("".join(f"{name}\n" for name in names))
    report.meta["labels_file"] = LABELS_FILE
    report.meta["labels"] = [str(name) for name in names]


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


def _printer(verbose: bool):
    def say(row):
        if verbose:
            from rich.console import Console

            detail = (
                f"{row.get('size_bytes', 0) / 1024:.1f} KB" if row["status"] == "ok" else row.get("reason", "")[:200]
            )
            Console(stderr=True, highlight=False, emoji=False).print(
                f"export {row['name']:<13} {row['status']:<11} {detail}"
            )

    return say


def _try(fn) -> str | None:
    try:
        fn()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip()[:500]}"
    return None


def _not_done(name: str, status: str, reason: str) -> dict[str, Any]:
    fmt = "tflite" if name in TFLITE_VARIANTS else name
    return {"name": name, "format": fmt, "file": None, "status": status, "reason": reason}
