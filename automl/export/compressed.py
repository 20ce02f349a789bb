"""The compressed variants of an export: the chosen model fine-tuned with pruning and/or QAT.

`pruned_float32` and `pruned_int8` are the model pruned to the asked sparsity; `qat_int8` is it
(pruned or not) after quantization-aware training, converted to full-integer int8. Each row has
the measured `sparsity` and `gzip_bytes` besides what every row has; agreement is with the model
as it was chosen (uncompressed), so the rows say what compression changed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..compression import compress
from ..errors import ExportError
from ..pruning import sparsity
from ..records import TrialSettings
from ..space import compression_settings
from .convert import convert_tflite, export_saved_model, tflite_plan

COMPRESSED_VARIANTS = {"pruned_float32": "float32", "pruned_int8": "int8", "qat_int8": "int8"}


def compressed_file(name: str) -> str:
    return f"model_{name}.tflite"


def add_compressed_variants(
    model, report, ev, data, compression: dict, training: dict, x_representative, int8_io: bool, threads, say
) -> None:
    """Fine-tune a copy of `model` (pruning, then QAT on the pruned copy) and add its rows to `report`."""
    import keras

    c = compression_settings(compression)
    if not (c["sparsity"] or c["qat"]):
        return
    if data is None:
        raise ExportError("pruning and QAT fine-tune on the training data: pass the search's data")
    settings = TrialSettings(objective="val_loss", direction="minimize", patience=None)
    with tempfile.TemporaryDirectory(prefix="automl-compress-") as tmp:
        copy_path = Path(tmp) / "copy.keras"
        model.save(copy_path)
        copy = keras.saving.load_model(copy_path, safe_mode=True)  # the chosen model stays as it was
        training = {"batch_size": 32, **training}
        report.extra["compression"] = {k: c[k] for k in ("sparsity", "structured", "schedule", "qat", "epochs")}
        zeros = None
        if c["sparsity"]:
            pruned = compress(copy, data, {**c, "qat": False}, training, settings)
            copy, zeros = pruned.model, pruned.sparsity  # structured: a smaller model, its zeros removed
            names = ["pruned_float32", "pruned_int8"]
            _rows(copy, names, report, ev, x_representative, int8_io, threads, say, tmp, zeros)
        if c["qat"]:
            done = compress(copy, data, {**c, "sparsity": 0.0}, training, settings)  # the pruned zeros stay zero
            # the file comes from the QAT twin: its activations keep the ranges they were trained with
            zeros = sparsity(copy) if zeros is None else zeros
            _rows(done.twin, ["qat_int8"], report, ev, x_representative, int8_io, threads, say, tmp, zeros)


def _rows(model, names, report, ev, x_representative, int8_io, threads, say, tmp_dir: str, zeros=None) -> None:
    tmp, out = Path(tempfile.mkdtemp(dir=tmp_dir)), Path(report.out_dir)
    saved = tmp / "saved_model"
    export_saved_model(model, saved)
    plan = tflite_plan(model, saved, tmp, out)
    measured = sparsity(model) if zeros is None else zeros
    for name in names:
        variant = COMPRESSED_VARIANTS[name]
        path = out / compressed_file(name)
        row: dict[str, Any]
        try:
            content = convert_tflite(plan.source, variant, x_representative, int8_io=int8_io)
        except Exception as exc:
            row = {"name": name, "format": "tflite", "file": None, "status": "unsupported", "reason": str(exc)[:400]}
        else:
            path.write_bytes(content)
            row = ev.run(name, "tflite", path, None, out, threads=threads)
        row["sparsity"] = measured
        row["param_count"] = int(model.count_params())  # structured pruning: fewer than the chosen model's
        report.variants[name] = row
        say(row)
