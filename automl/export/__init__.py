"""Export a trained model for serving and for phones, and measure every file written.

Formats: `keras` (`model.keras`), `saved_model` (TensorFlow SavedModel via `model.export`) and four
TFLite variants: `float32`, `float16` (half-size weights), `dynamic_int8` (int8 weights, float
activations) and `int8` (full-integer, calibrated on a representative sample of the training data;
`int8_io=True` also makes the inputs and outputs int8). A variant the converter or the LiteRT
interpreter cannot handle is recorded as `unsupported` with the reason; the others still export.

Every file is then run on held-out data (TFLite files with the LiteRT interpreter, the same one a
phone uses): task metric, agreement with the Keras model's predictions, size, batch-1 latency
(median, p95) and throughput at a batch size. `export_report.json` and `REPORT.md` go beside the
files. TensorFlow loads only inside the functions here.

Modules: `convert` (SavedModel/TFLite conversion), `runners` (running the files), `evaluate`
(scoring and timing), `report` (`ExportReport`), `model` (`export_model`), `trials` (a search's
trials: `export_result`, int8 selection), `distill` (knowledge distillation).
"""

from ..errors import ExportError
from .convert import FILES, FORMATS, TFLITE_VARIANTS, convert_tflite, export_saved_model, parse_formats
from .evaluate import FLOAT32_TOLERANCE, QUANT_ACCURACY_TOLERANCE, score
from .model import check_inputs, export_model
from .report import ExportReport
from .runners import TFLiteRunner
from .trials import TrialModels, export_result, pareto_front, search_data, select_by_int8

__all__ = [
    "FILES",
    "FLOAT32_TOLERANCE",
    "FORMATS",
    "QUANT_ACCURACY_TOLERANCE",
    "TFLITE_VARIANTS",
    "ExportError",
    "ExportReport",
    "TFLiteRunner",
    "TrialModels",
    "check_inputs",
    "convert_tflite",
    "export_model",
    "export_result",
    "export_saved_model",
    "pareto_front",
    "parse_formats",
    "score",
    "search_data",
    "select_by_int8",
]
