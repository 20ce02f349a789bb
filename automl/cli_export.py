"""`automl export`: a finished search's trial (or ensemble) to .keras, SavedModel and TFLite files, each
measured for accuracy, size and latency, with optional pruning and quantization-aware fine-tuning."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import err, fail, hide_tensorflow_startup_log, no_study, parse_image_size, print_export


def export(
    study: str = typer.Option(..., "--study", help="Study name."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the files, export_report.json and REPORT.md."),
    trial: int | None = typer.Option(None, "--trial", help="Trial number (default: the best trial)."),
    pareto: bool = typer.Option(False, "--pareto", help="Export every trial on the objective/weights Pareto front."),
    ensemble: bool = typer.Option(
        False, "--ensemble", help="Export the ensemble of the top trials (the best one alone if mixing does not help)."
    ),
    formats: str = typer.Option(
        "all",
        "--formats",
        help="Comma-separated: keras, saved_model, float32, float16, dynamic_int8, int8, tflite (the four), all.",
    ),
    representative_samples: int = typer.Option(
        200, "--representative-samples", help="Training rows that calibrate full-integer int8."
    ),
    int8_io: bool = typer.Option(
        False, "--int8-io", help="Full-integer int8 file takes and returns int8 (default float)."
    ),
    select_int8: int | None = typer.Option(
        None, "--select-int8", help="Rank the top K trials by int8 TFLite score and export the winner."
    ),
    distill: bool = typer.Option(
        False, "--distill", help="Also distil a smaller student (smallest Pareto trial) and export it."
    ),
    student: int | None = typer.Option(
        None, "--student", help="Trial whose architecture the student uses (implies --distill)."
    ),
    distill_epochs: int | None = typer.Option(None, "--distill-epochs", help="Student epochs (default: the search's)."),
    data: str | None = typer.Option(
        None, "--data", help="The search's data (default: the built-in set the study records)."
    ),
    target: str | None = typer.Option(None, "--target", help="Target column of a CSV file."),
    validation_split: float | None = typer.Option(
        None, "--validation-split", help="As in the search (default: the recorded split)."
    ),
    image_size: str | None = typer.Option(None, "--image-size", help="HEIGHTxWIDTH: as in the search."),
    seed: int | None = typer.Option(None, "--seed", help="As in the search (default: the recorded seed)."),
    space: str | None = typer.Option(
        None, "--space", help="The search's space, to rebuild trials without a stored model."
    ),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage (default mlruns/optuna.journal)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the study's)."),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register the export in the MLflow Model Registry."
    ),
    registered_name: str | None = typer.Option(
        None, "--registered-name", help="Registry name (default: the study name)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="Batch size of the throughput measurement."),
    eval_samples: int | None = typer.Option(None, "--eval-samples", help="Held-out samples to score (default: all)."),
    latency_runs: int = typer.Option(100, "--latency-runs", help="Single-sample calls timed per file."),
    threads: int = typer.Option(1, "--threads", help="LiteRT interpreter threads."),
    prune: float | None = typer.Option(
        None, "--prune", help="Also fine-tune with magnitude pruning to this sparsity (0-0.99): pruned_* files."
    ),
    prune_structured: bool = typer.Option(False, "--prune-structured", help="Prune whole channels (with --prune)."),
    qat: bool = typer.Option(False, "--qat", help="Also fine-tune with quantization-aware training: qat_int8 file."),
    fine_tune_epochs: int | None = typer.Option(
        None, "--fine-tune-epochs", help="Epochs of each fine-tuning, pruning and QAT (default 4)."
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Also show TensorFlow's C++ start-up log lines."),
):
    """Export a trial to .keras, SavedModel and TFLite (float32/float16/int8) and measure every file."""
    if not verbose:
        hide_tensorflow_startup_log()
    from .data import DataError, load_data
    from .export import ExportError, ExportReport, parse_formats
    from .records import DATA_SCHEMA, SearchSettings
    from .results import load_result
    from .space import SpaceError
    from .stores import StoreError

    if trial is not None and (pareto or select_int8):
        fail("--trial cannot be combined with --pareto or --select-int8")
    if ensemble and (trial is not None or pareto or select_int8):
        fail("--ensemble cannot be combined with --trial, --pareto or --select-int8")
    compression = _compression_flags(prune, prune_structured, qat, fine_tune_epochs)
    try:
        parse_formats(formats)  # a typo fails before anything loads
        result = load_result(study, storage, tracking_uri)
    except KeyError:
        no_study(study, storage)
    except (ExportError, StoreError) as exc:
        fail(str(exc))
    try:
        dataset = None
        if data:
            recorded, schema = SearchSettings.of(result.study), result.study.user_attrs.get(DATA_SCHEMA, {})
            dataset = load_data(
                data,
                target,
                validation_split=validation_split or recorded.validation_split,
                seed=(recorded.seed or 0) if seed is None else seed,
                image_size=parse_image_size(image_size),
                kind=schema.get("kind"),  # read as the search did
                task=schema.get("task"),
            )
        report = result.export(
            out_dir,
            trial="pareto" if pareto else trial,
            data=dataset,
            formats=formats,
            representative_samples=representative_samples,
            int8_io=int8_io,
            select_int8_top_k=select_int8,
            distill=distill,
            student=student,
            distill_epochs=distill_epochs,
            space=space,
            register=register,
            registered_name=registered_name,
            batch_size=batch_size,
            eval_samples=eval_samples,
            latency_runs=latency_runs,
            threads=threads,
            ensemble=ensemble,
            compression=compression,
        )
    except (ExportError, DataError, SpaceError, StoreError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    for rep in [report] if not pareto else [ExportReport.from_dict(d) for d in report.extra["pareto"].values()]:
        print_export(rep)
        if "student" in rep.extra:
            print_export(ExportReport.from_dict(rep.extra["student"]))
    registered = report.meta.get("registered")
    err.print(
        f"\nFiles, export_report.json and REPORT.md in {out_dir}; logged to MLflow run {result.mlflow_run_id}"
        + (f"; registered as {registered['name']} version {registered['version']}" if registered else ""),
        soft_wrap=True,  # a path broken over two lines cannot be copied
    )


def _compression_flags(prune: float | None, structured: bool, qat: bool, epochs: int | None) -> dict | None:
    """`automl export`'s compression flags as a space's `compression:` keys; bad values fail here."""
    from .space.compression import value_problem

    if prune is None and not qat:
        if structured or epochs is not None:
            fail("--prune-structured and --fine-tune-epochs need --prune or --qat")
        return None
    chosen = {"sparsity": prune or 0.0, "structured": structured, "qat": qat}
    if epochs is not None:
        chosen["epochs"] = epochs
    for flag, key in (("--prune", "sparsity"), ("--fine-tune-epochs", "epochs")):
        if key in chosen and (problem := value_problem(key, chosen[key])):
            fail(f"{flag}: {problem}")
    return chosen
