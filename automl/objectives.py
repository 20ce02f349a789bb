"""What a search optimises: validation metrics and on-device costs, each with a direction, plus
constraints that make a trial infeasible.

Costs are measured, not estimated: `tflite_size_bytes` and `latency_ms` come from converting the
trained candidate to a float32 TFLite file and timing the LiteRT interpreter on single samples;
`tflite_gzip_bytes` is the gzip'd size of its full-integer int8 file (what an app download costs:
pruned zeros compress, int8 weights take a quarter of float32's bytes).
"""

from __future__ import annotations

import gzip
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ObjectiveError
from .metrics import EXTRA_METRICS
from .training import loss_and_metrics

COSTS = ("param_count", "model_size_bytes", "tflite_size_bytes", "latency_ms", "tflite_gzip_bytes")
REPRESENTATIVE_ROWS = 200  # int8 calibration rows of the training data
LATENCY_RUNS = 30


def metric_names(task: str) -> list[str]:
    """Names Keras logs per epoch for this task: the objective must be one of them."""
    _, metrics = loss_and_metrics(task)
    names = ["loss", *metrics, *(EXTRA_METRICS if task == "classification" else ())]
    return names + [f"val_{n}" for n in names]


def default_objective(task: str) -> tuple[str, str]:
    return ("val_accuracy", "maximize") if task == "classification" else ("val_loss", "minimize")


def infer_direction(objective: str) -> str:
    name = objective.removeprefix("val_")
    maximized = ("accuracy", "balanced_accuracy", "auc", "precision", "recall", "f1", "f1_score")
    return "maximize" if name in maximized else "minimize"


@dataclass
class Objectives:
    """Names and directions, in order; `primary` is the validation metric that early stopping and the
    pruner follow (the first metric among the names)."""

    names: list[str]
    directions: list[str]
    constraints: dict[str, float] = field(default_factory=dict)  # name -> upper bound (value <= bound)

    @property
    def primary(self) -> str:
        return next(n for n in self.names if n not in COSTS)

    @property
    def multi(self) -> bool:
        return len(self.names) > 1

    @property
    def costs(self) -> set[str]:
        return {n for n in (*self.names, *self.constraints) if n in COSTS}

    def constraint_values(self, values: dict[str, float]) -> list[float]:
        """Optuna's convention: <= 0 is feasible."""
        return [float(values[name]) - bound for name, bound in self.constraints.items()]


def parse_objectives(
    objectives, known_metrics: list[str], default: tuple[str, str], direction: str | None = None, constraints=None
) -> Objectives:
    """`objectives`: None, a name, or a list of names with optional `:max`/`:min` (costs minimise).
    `constraints`: {"latency_ms": 2} or ["tflite_size_bytes<=200000"]."""
    if objectives is None:
        items = [default[0] + ":" + (direction or default[1])[:3]]
    elif isinstance(objectives, str):
        items = [objectives + (f":{direction[:3]}" if direction and ":" not in objectives else "")]
    else:
        items = list(objectives)
    names, directions = [], []
    for item in items:
        name, _, way = str(item).partition(":")
        if name not in known_metrics and name not in COSTS:
            raise ObjectiveError(
                f"objective {name!r} is not logged (choose from {', '.join(known_metrics)}, "
                f"or the costs {', '.join(COSTS)})"
            )
        if name in names:
            raise ObjectiveError(f"objective {name!r} is given twice")
        resolved = {
            "max": "maximize",
            "maximize": "maximize",
            "min": "minimize",
            "minimize": "minimize",
            "": "minimize" if name in COSTS else infer_direction(name),
        }.get(way)
        if resolved is None:
            raise ObjectiveError(f"objective {item!r}: the direction after ':' must be max or min")
        names.append(name)
        directions.append(resolved)
    if all(n in COSTS for n in names):
        raise ObjectiveError(
            "at least one objective must be a validation metric "
            f"(e.g. {default[0]}): costs alone would pick an untrained model"
        )
    return Objectives(names, directions, parse_constraints(constraints, known_metrics))


def parse_constraints(constraints, known_metrics: list[str]) -> dict[str, float]:
    if not constraints:
        return {}
    if isinstance(constraints, dict):
        pairs = list(constraints.items())
    else:
        pairs = []
        for text in constraints:
            m = re.fullmatch(r"\s*([\w.]+)\s*<=\s*([-+0-9.eE]+)\s*", str(text))
            if not m:
                raise ObjectiveError(f"constraint {text!r} must read NAME<=NUMBER, e.g. latency_ms<=2")
            pairs.append((m.group(1), float(m.group(2))))
    out = {}
    for name, bound in pairs:
        if name not in COSTS and name not in known_metrics:
            raise ObjectiveError(f"constraint on {name!r}: not measured (costs: {', '.join(COSTS)})")
        out[name] = float(bound)
    return out


def measure_costs(model, data, needed: set[str]) -> dict[str, float]:
    """The on-device costs in `needed`, measured on the trained model."""
    out: dict[str, float] = {}
    if "param_count" in needed:
        out["param_count"] = float(model.count_params())
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "model_size_bytes" in needed:
            model.save(tmp / "m.keras")
            out["model_size_bytes"] = float((tmp / "m.keras").stat().st_size)
        if needed & {"tflite_size_bytes", "latency_ms", "tflite_gzip_bytes"}:
            from .export.convert import convert_tflite, export_saved_model
            from .export.evaluate import time_calls
            from .export.runners import TFLiteRunner, rows

            export_saved_model(model, tmp / "saved")
            if "tflite_gzip_bytes" in needed:
                int8 = convert_tflite(tmp / "saved", "int8", rows(data.x_train, slice(0, REPRESENTATIVE_ROWS)))
                out["tflite_gzip_bytes"] = float(len(gzip.compress(int8, compresslevel=9)))
            content = convert_tflite(tmp / "saved", "float32") if needed & {"tflite_size_bytes", "latency_ms"} else b""
            out["tflite_size_bytes"] = float(len(content))
            if "latency_ms" in needed:
                runner, sample = TFLiteRunner(content=content, threads=1), rows(data.x_val, slice(0, 1))
                out["latency_ms"] = float(np.median(time_calls(lambda _: runner(sample), LATENCY_RUNS, warmup=1)))
    return {k: v for k, v in out.items() if k in needed}
