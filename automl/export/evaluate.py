"""Scoring and timing an exported file on held-out data: the task metric, agreement with the Keras
model, the largest output difference, batch-1 latency (median, p95) and throughput. The same timing
loop measures the `latency_ms` objective of a search (automl.objectives)."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .runners import TFLiteRunner, n_samples, rows, tensor_input

FLOAT32_TOLERANCE = 1e-4  # max |TFLite float32 - Keras| per output value (probabilities or targets)
QUANT_ACCURACY_TOLERANCE = 0.005  # a quantized variant is "as good" within half a point of float32


def time_calls(fn: Callable[[int], Any], runs: int, warmup: int = 3) -> np.ndarray:
    """Milliseconds of `runs` calls of `fn(i)`, after `warmup` untimed ones."""
    for i in range(warmup):
        fn(i)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times[i] = (time.perf_counter() - start) * 1000
    return times


def keras_call_latency(model, x, runs: int) -> dict[str, float]:
    """A direct `model(x)` call, the cheapest way to run one sample in Keras (for comparison)."""
    n = n_samples(x)
    times = time_calls(lambda i: model(tensor_input(rows(x, slice(i % n, i % n + 1))), training=False), runs)
    return {"latency_call_p50_ms": float(np.median(times)), "latency_call_p95_ms": float(np.percentile(times, 95))}


def score(task: str, y, pred: np.ndarray) -> dict[str, float]:
    """The task metric of predictions against labels: accuracy, or MAE and RMSE."""
    y = np.asarray(y)
    if task == "classification":
        return {"accuracy": float(np.mean(predicted_classes(pred) == y.reshape(-1)))}
    err = pred.reshape(len(pred), -1)[:, 0] - y.reshape(len(y), -1)[:, 0].astype("float32")
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def predicted_classes(p: np.ndarray) -> np.ndarray:
    p = p.reshape(len(p), -1)
    return (p[:, 0] > 0.5).astype(int) if p.shape[1] == 1 else p.argmax(axis=1)


def file_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _pad(x, n: int):
    """A full batch: the last short batch is padded with its own rows (outputs are cut back)."""
    if isinstance(x, dict):
        return {k: _pad(v, n) for k, v in x.items()}
    if len(x) >= n or not len(x):
        return x
    return np.concatenate([x, np.resize(x, (n - len(x), *x.shape[1:]))])


class Evaluator:
    """Runs one exported file over the held-out set and compares it with the Keras predictions."""

    def __init__(self, task, y, reference, x, batch_size, latency_runs):
        self.task, self.y, self.reference, self.x = task, y, reference, x
        self.batch_size, self.latency_runs = batch_size, latency_runs
        spread = float(np.std(reference)) if task != "classification" else 0.0
        self.regression_tolerance = 0.01 * (spread or 1.0)

    def run(self, name: str, fmt: str, path: Path, runner, out: Path, threads: int | None = 1) -> dict[str, Any]:
        row: dict[str, Any] = {
            "name": name,
            "format": fmt,
            "file": str(path.relative_to(out)),
            "status": "ok",
            "reason": None,
            "size_bytes": file_size(path),
        }
        if fmt == "tflite":  # what an app download costs: pruned zeros compress
            row["gzip_bytes"] = len(gzip.compress(path.read_bytes(), compresslevel=9))
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
                row["reason"] = (
                    f"the XNNPACK delegate refused the file ({str(exc).strip()[:120]}); measured "
                    f"with LiteRT's built-in kernels"
                )
        except Exception as exc:
            row.update(status="failed", reason=f"running the file: {type(exc).__name__}: {str(exc)[:400]}")
        return row

    def _measure(self, runner) -> dict[str, Any]:
        x, bs, n = self.x, self.batch_size, n_samples(self.x)
        runner(_pad(rows(x, slice(0, bs)), bs))  # warm-up: allocation, tracing
        start = time.perf_counter()
        preds = [runner(_pad(rows(x, slice(i, i + bs)), bs))[: min(bs, n - i)] for i in range(0, n, bs)]
        seconds = time.perf_counter() - start
        pred = np.concatenate(preds).reshape(self.reference.shape)
        times = time_calls(lambda i: runner(rows(x, slice(i % n, i % n + 1))), self.latency_runs)
        row = {
            "latency_p50_ms": float(np.median(times)),
            "latency_p95_ms": float(np.percentile(times, 95)),
            "throughput_per_s": n / seconds,
            "max_abs_diff": float(np.max(np.abs(pred - self.reference))),
        }
        if self.task == "classification":
            row["agreement"] = float(np.mean(predicted_classes(pred) == predicted_classes(self.reference)))
        else:
            diff = np.abs(pred - self.reference).reshape(n, -1).max(axis=1)
            row["agreement"] = float(np.mean(diff <= self.regression_tolerance))
        if self.y is not None:
            row.update(score(self.task, self.y, pred))
        return row


def note_int8_loss(variants: dict[str, dict[str, Any]], metric: str) -> None:
    """Say why full-integer int8 lost accuracy when it did: its first op quantizes the raw inputs."""
    base, row = variants.get("float32", {}), variants.get("int8", {})
    if metric != "accuracy" or row.get("accuracy") is None or base.get("accuracy") is None:
        return
    loss = base["accuracy"] - row["accuracy"]
    if loss > QUANT_ACCURACY_TOLERANCE:
        row["reason"] = "; ".join(
            filter(
                None,
                [
                    row.get("reason"),
                    (
                        f"{loss * 100:.1f} points below float32: full-integer int8 quantizes the inputs and every "
                        f"activation with one scale per tensor, which loses inputs whose features span very "
                        f"different ranges; dynamic_int8 keeps activations in float"
                    ),
                ],
            )
        )


def recommend(variants: dict[str, dict[str, Any]], metric: str) -> str | None:
    """The smallest TFLite file as good as float32 (within the tolerance)."""
    base = variants.get("float32")
    if not base or base["status"] != "ok":
        return None
    ok = [v for v in variants.values() if v["format"] == "tflite" and v["status"] == "ok"]
    if base.get(metric) is not None:
        if metric == "accuracy":
            ok = [v for v in ok if v.get(metric) is not None and v[metric] >= base[metric] - QUANT_ACCURACY_TOLERANCE]
        else:
            ok = [v for v in ok if v.get(metric) is not None and v[metric] <= base[metric] * 1.01 + 1e-9]
    return min(ok, key=lambda v: v["size_bytes"])["name"] if ok else None
