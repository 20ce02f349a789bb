"""`automl check`: the data checks a search runs at its start (checks.py), alone and in full."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import fail, hide_tensorflow_startup_log, out, parse_image_size


def check(
    data: str = typer.Option(..., "--data", help="A built-in set, a CSV file (+ --target), an .npz file or a folder."),
    target: str | None = typer.Option(None, "--target", help="Target column of a CSV file."),
    task: str | None = typer.Option(None, "--task", help="classification | regression, as the search will."),
    validation_split: float = typer.Option(0.2, "--validation-split", help="As the search will split."),
    image_size: str | None = typer.Option(None, "--image-size", help="HEIGHTxWIDTH: resize a folder's images."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Also write data_report.json and data_report.md into this folder."
    ),
):
    """Check the data before a search: class balance, duplicates and train/validation overlap, constant,
    ID-like and leaking columns, missing values, outliers, label-noise hints, sequence lengths."""
    from rich.markup import escape

    hide_tensorflow_startup_log()  # images and text load TensorFlow: its start-up lines are noise here
    from .checks import check_dataset
    from .data import DataError, load_data

    try:
        dataset = load_data(
            data,
            target,
            validation_split=validation_split,
            seed=seed,
            image_size=parse_image_size(image_size),
            task=task,
        )
    except DataError as exc:
        fail(str(exc))
    report = check_dataset(dataset)
    for line in report.summary():
        out.print(escape(line), soft_wrap=True)
    if out_dir is not None:
        paths = report.write(out_dir)
        out.print(f"written: {', '.join(str(p) for p in paths)}", soft_wrap=True)
