"""automl: Keras architecture and hyperparameter search on Optuna, tracked in MLflow.

Heavy parts (TensorFlow, MLflow) load on first use, so `automl --help` starts fast.
"""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network at run time
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class _NoRetracingAdvice(logging.Filter):
    """Drops TensorFlow's "N out of the last N calls to <function> triggered tf.function retracing"
    warning. Every trial builds new models and predicts with them, which traces new functions; the
    advice (define the function outside the loop) is for the code that loops, automl's, and a user
    can do nothing with it. Installed in every process that imports automl (trial workers too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NoRetracingAdvice())

__version__ = "0.1.0"

_LAZY = {
    "Search": "automl.search",
    "SearchError": "automl.errors",
    "SearchResult": "automl.results",
    "load_result": "automl.results",
    "SearchSpace": "automl.space",
    "load_space": "automl.space",
    "SpaceError": "automl.errors",
    "Int": "automl.space",
    "Float": "automl.space",
    "Categorical": "automl.space",
    "Bool": "automl.space",
    "Fixed": "automl.space",
    "Repeat": "automl.space",
    "Dataset": "automl.data",
    "DataError": "automl.errors",
    "ExportError": "automl.errors",
    "export_model": "automl.export",
    "export_result": "automl.export",
    "make_dataset": "automl.data",
    "load_data": "automl.data",
    "build_model": "automl.builder",
    "check": "automl.checks",
    "DataReport": "automl.checks",
    "ImageClassifier": "automl.tasks",
    "TextClassifier": "automl.tasks",
    "SequenceClassifier": "automl.tasks",
    "TabularClassifier": "automl.tasks",
    "TabularRegressor": "automl.tasks",
    "ImageRegressor": "automl.tasks",
    "TextRegressor": "automl.tasks",
    "SequenceRegressor": "automl.tasks",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'automl' has no attribute {name!r}")
