"""Export figures on real data: a CNN found by a short search on MNIST, exported to every format and
measured side by side with the Keras model, in one run, on held-out digits no trial has seen.

Data: ../shared/data/mnist_test (the official MNIST t10k files, IDX gzip; see its SOURCE.txt). The
10,000 digits are split 6,000 train / 2,000 validation (the search's) / 2,000 test (the export's).
Without that folder the bench says so and stops: it never downloads anything.

    .venv/bin/python bench/export.py                      # 4 trials x 3 epochs, ~3 min on 2 CPU cores
    .venv/bin/python bench/export.py --trials 6 --epochs 5 --distill

Goals (issue 5): int8 file at most 30% of the float32 file; int8 accuracy within 0.5 point of
float32; single-sample TFLite latency at most a tenth of `model.predict` on one sample.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from header import print_header
from quality import read_idx
from results_md import write_section

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist_test"


def small_cnn_space():
    """Conv blocks small enough for a CPU bench; the same kind of model image_cnn finds."""
    from automl.space import Categorical, Float, Int, SearchSpace

    return SearchSpace(
        name="bench_cnn",
        input="image",
        architecture={
            "blocks": {
                "repeat": Int(low=1, high=2),
                "each": {
                    "block": "conv",
                    "filters": Int(low=12, high=32, log=True),
                    "kernel_size": 3,
                    "pooling": Categorical(choices=["max", "strided"]),
                    "batch_norm": Categorical(choices=[True, False]),
                },
            },
            "pool": {"block": "global_pool", "mode": Categorical(choices=["avg", "flatten"])},
            "head": {"block": "dense", "units": Int(low=32, high=128, log=True)},
        },
        training={"learning_rate": Float(low=1e-3, high=1e-2, log=True), "batch_size": 64},
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--latency-runs", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--distill", action="store_true", help="Also distil a smaller student and compare it.")
    ap.add_argument("--out", type=Path, default=None, help="Keep the exported files here.")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args()
    header = print_header()

    images, labels = MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        sys.exit(
            f"bench/export.py needs {MNIST} (the shared MNIST test files); it is absent, so there is "
            f"nothing to measure. See ../shared/README.md."
        )

    import automl  # noqa: F401  (quiet TF logging)
    from automl import Search
    from automl.data import make_dataset
    from automl.export import export_model

    x, y = read_idx(images).astype("float32"), read_idx(labels).astype("int64")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x_search, y_search, x_test, y_test = x[:8000], y[:8000], x[8000:], y[8000:]
    data = make_dataset(x_search[..., None], y_search, validation_split=0.25, name="mnist8000", seed=0)
    print(f"MNIST t10k: {data.summary()}; export test set: {len(x_test)} held-out digits", flush=True)

    work = Path(tempfile.mkdtemp(prefix="automl-bench-export-"))
    out = args.out or work / "export"
    started = time.perf_counter()
    result = Search(
        small_cnn_space(),
        study_name="bench-export",
        storage=str(work / "optuna.journal"),
        tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
        max_trials=args.trials,
        seed=0,
        verbose=False,
    ).fit(data=data, epochs=args.epochs)
    best = result.best_trial
    print(
        f"search: {args.trials} trials x {args.epochs} epochs in {time.perf_counter() - started:.0f} s; "
        f"best trial {best.number}: val_accuracy {best.value:.4f}, {best.user_attrs['param_count']} weights",
        flush=True,
    )

    model = result.best_model()
    report = export_model(
        model,
        out,
        x_eval=x_test[..., None],
        y_eval=y_test,
        x_representative=data.x_train,
        representative_samples=200,
        batch_size=args.batch_size,
        latency_runs=args.latency_runs,
        threads=args.threads,
        meta={"title": "bench/export.py: MNIST CNN", "trial": best.number},
    )
    lines = [
        f"search: {args.trials} trials x {args.epochs} epochs on 6000 train / 2000 val digits; best trial "
        f"{best.number} (val_accuracy {best.value:.4f}, {best.user_attrs['param_count']} weights); "
        f"measured on 2000 held-out digits:",
        "",
        "```",
        table(report),
        "",
        goals(report),
        "```",
    ]
    print(lines[0])
    print(table(report))
    print(goals(report))
    if args.distill:
        from automl.export import TrialModels as _TrialModels
        from automl.export.distill import distill_student

        source = _TrialModels(result, data, small_cnn_space(), verbose=True)
        student, facts = distill_student(source, model, None, epochs=args.epochs, exclude=best.number)
        s_report = export_model(
            student,
            out / "student",
            x_eval=x_test[..., None],
            y_eval=y_test,
            x_representative=data.x_train,
            batch_size=args.batch_size,
            latency_runs=args.latency_runs,
            threads=args.threads,
            meta=facts,
        )
        print(
            f"\nstudent ({facts['student']}): {facts['param_count']} weights vs teacher {facts['teacher_param_count']}"
        )
        print(table(s_report))
        lines += [
            "",
            f"distilled student ({facts['param_count']} weights vs {facts['teacher_param_count']}):",
            "",
            "```",
            table(s_report),
            "```",
        ]
    print(f"\nfiles and REPORT.md in {out}")
    if not args.no_write:
        command = "python bench/export.py " + " ".join(sys.argv[1:])
        write_section("Export", f"`{command.strip()}` ({header}).\n\n" + "\n".join(lines))


def table(report) -> str:
    out = io.StringIO()
    print_table(report, out)
    return out.getvalue().rstrip("\n")


def goals(report) -> str:
    out = io.StringIO()
    check_goals(report, out)
    return out.getvalue().rstrip("\n")


def print_table(report, file=None):
    v = report.variants
    base = v["float32"]["size_bytes"] if report.ok("float32") else None
    _print(
        file,
        f"\n{'variant':<13} {'size KB':>9} {'% f32':>6} {'accuracy':>9} {'agree':>7} {'p50 ms':>9} {'p95 ms':>9} "
        f"{'samples/s':>10}",
    )
    for name, row in v.items():
        if row["status"] != "ok":
            _print(file, f"{name:<13} {row['status']}: {row['reason']}")
            continue
        pct = f"{row['size_bytes'] / base:.0%}" if base and row["format"] == "tflite" else ""
        _print(
            file,
            f"{name:<13} {row['size_bytes'] / 1024:>9.1f} {pct:>6} {row['accuracy']:>9.4f} {row['agreement']:>7.4f} "
            f"{row['latency_p50_ms']:>9.3f} {row['latency_p95_ms']:>9.3f} {row['throughput_per_s']:>10.0f}",
        )
    k = v.get("keras", {})
    if "latency_call_p50_ms" in k:
        _print(
            file,
            f"(keras: p50/p95 above are model.predict on one sample; a direct model(x) call takes "
            f"{k['latency_call_p50_ms']:.3f} / {k['latency_call_p95_ms']:.3f} ms)",
        )


def check_goals(report, file=None):
    v = report.variants
    f32, i8, keras = v["float32"], v["int8"], v["keras"]
    goals = [
        (
            "int8 file <= 30% of float32",
            i8["size_bytes"] / f32["size_bytes"],
            "{:.1%}",
            i8["size_bytes"] <= 0.30 * f32["size_bytes"],
        ),
        (
            "int8 accuracy within 0.5 point of float32",
            (f32["accuracy"] - i8["accuracy"]) * 100,
            "{:+.2f} points lost",
            f32["accuracy"] - i8["accuracy"] <= 0.005,
        ),
        (
            "TFLite float32 p50 <= 1/10 of model.predict p50",
            f32["latency_p50_ms"] / keras["latency_p50_ms"],
            "{:.4f}x",
            f32["latency_p50_ms"] <= keras["latency_p50_ms"] / 10,
        ),
        (
            "TFLite int8 p50 <= 1/10 of model.predict p50",
            i8["latency_p50_ms"] / keras["latency_p50_ms"],
            "{:.4f}x",
            i8["latency_p50_ms"] <= keras["latency_p50_ms"] / 10,
        ),
    ]
    _print(file, "\ngoals:")
    for name, value, fmt, ok in goals:
        _print(file, f"  {'PASS' if ok else 'FAIL'}  {name}: {fmt.format(value)}")


def _print(file, *args, **kwargs):
    print(*args, file=file, **kwargs)


if __name__ == "__main__":
    main()
