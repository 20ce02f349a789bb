"""`automl` command line. Imports stay light at start-up: TensorFlow loads only inside `search`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Keras architecture + hyperparameter search on Optuna, tracked in MLflow.")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

USAGE_ERROR = 2


def _fail(message: str, code: int = USAGE_ERROR):
    err.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def search(
    space: str = typer.Argument(..., help="Space YAML file, or a shipped space name (see `automl spaces`)."),
    data: str = typer.Option(..., "--data", help="digits | breast_cancer | wine | diabetes | PATH.csv | PATH.npz"),
    target: Optional[str] = typer.Option(None, "--target", help="Target column of a CSV file."),
    trials: int = typer.Option(10, "--trials", help="Finished trials wanted in the study (a rerun completes the rest)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Wall-clock budget in seconds."),
    epochs: int = typer.Option(10, "--epochs", help="Maximum epochs per trial."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: SPACE-DATA); same name resumes."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage: journal file path or sqlite:// / postgresql:// URL."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default sqlite:///mlruns/mlflow.db)."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe | random"),
    pruner: str = typer.Option("median", "--pruner", help="median | none"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the sampler, data split and weights."),
    objective: Optional[str] = typer.Option(None, "--objective", help="Metric to optimise (default val_accuracy / val_loss)."),
    direction: Optional[str] = typer.Option(None, "--direction", help="maximize | minimize (default: from the objective)."),
    validation_split: float = typer.Option(0.2, "--validation-split", help="Share of the data held out for validation."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the leaderboard."),
    isolate: bool = typer.Option(False, "--isolate", help="Train each trial in a child process: a crash or kill of it fails only that trial."),
    memory_limit: Optional[float] = typer.Option(None, "--memory-limit", help="MB of resident memory a trial process may use before it is killed (implies --isolate)."),
    retry_dead: bool = typer.Option(False, "--retry-dead", help="Enqueue again the configurations of trials whose worker died."),
    worker: int = typer.Option(0, "--worker", help="Index of this worker when several share a study and a --seed: each samples its own sequence."),
    device: Optional[str] = typer.Option(None, "--device", help="GPU(s) this worker may use, e.g. 0 or 0,1 (sets CUDA_VISIBLE_DEVICES); 'cpu' hides all GPUs."),
):
    """Run (or resume) a search and print the leaderboard."""
    if device is not None:  # before TensorFlow loads, or it would already have claimed every GPU
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else device
    from .data import DataError, load_data
    from .space import SpaceError, load_space
    from .stores import StoreError

    try:
        space_obj = load_space(space)  # before TensorFlow loads: a bad file fails in a blink
        dataset = load_data(data, target, validation_split=validation_split, seed=seed or 0)
        from .search import Search, SearchError

        result = Search(space_obj, study_name=study, storage=storage, tracking_uri=tracking_uri,
                        sampler=sampler, pruner=pruner, seed=seed, objective=objective, direction=direction,
                        max_trials=trials, timeout=timeout, verbose=not quiet, isolate=isolate,
                        memory_limit_mb=memory_limit, retry_dead=retry_dead, worker=worker,
                        ).fit(data=dataset, epochs=epochs)
    except (SpaceError, DataError, StoreError) as exc:
        _fail(str(exc))
    except ValueError as exc:  # SearchError and bad sampler/pruner names
        _fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted: finished trials are saved; run the same command to resume")
        raise typer.Exit(130)
    _print_leaderboard(result.study, k=10)
    if not quiet:
        _where(result.study.study_name, result.tracking_uri, storage)


@app.command()
def trials(
    study: str = typer.Option(..., "--study", help="Study name."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage (default mlruns/optuna.journal)."),
    top: int = typer.Option(20, "--top", help="Rows to show (0: all)."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the whole table to this CSV file."),
):
    """Leaderboard of a study's trials."""
    import optuna

    from .results import leaderboard
    from .stores import StoreError, open_storage

    try:
        st = optuna.load_study(study_name=study, storage=open_storage(storage))
    except StoreError as exc:
        _fail(str(exc))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
        _fail(f"no study {study!r} in the storage (studies: {', '.join(names) or 'none'})")
    if csv:
        leaderboard(st, None).to_csv(csv, index=False)
    _print_leaderboard(st, k=top or None)


@app.command()
def spaces():
    """List the shipped search spaces."""
    import yaml

    from .space import shipped_spaces

    for name, path in shipped_spaces().items():
        doc = yaml.safe_load(path.read_text()) or {}
        out.print(f"[bold]{name:<22}[/] {doc.get('description', '')}")


@app.command()
def ui(
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store (default sqlite:///mlruns/mlflow.db)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 127.0.0.1 keeps it private."),
    port: int = typer.Option(5000, "--port"),
):
    """Open the MLflow UI on the local store."""
    import subprocess

    from .stores import default_artifact_location, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if artifacts := default_artifact_location(uri):
        cmd += ["--default-artifact-root", artifacts]
    err.print(f"MLflow UI on http://{host}:{port}  (Ctrl-C to stop)")
    raise typer.Exit(subprocess.call(cmd))


def _print_leaderboard(study, k: int | None):
    """Core columns per trial, then the best configuration spelt out."""
    from rich.table import Table

    from .results import leaderboard

    df = leaderboard(study, k)
    if df.empty:
        out.print("no trials yet")
        return
    table = Table(title=f"{study.study_name}: {study.user_attrs.get('objective', 'value')} "
                        f"({study.direction.name.lower()})")
    shown = ["trial", "state", "value", "epochs", "params_count", "seconds"]
    for col in shown:
        table.add_column(col.replace("params_count", "weights"), justify="right")
    table.add_column("note", overflow="fold")
    for _, row in df.iterrows():
        note = row["fail_reason"][:100] if _present(row.get("fail_reason")) else ""
        table.add_row(*(_fmt(row[c]) for c in shown), note)
    out.print(table)
    best = df[df.state == "COMPLETE"].head(1)
    if len(best):
        row = best.iloc[0]
        params = [c for c in df.columns if c not in shown + ["fail_reason"] and not c.endswith(".block")]
        out.print(f"best configuration (trial {row['trial']}):")
        for c in params:
            if _present(row[c]):
                out.print(f"  {c} = {_fmt(row[c])}")


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and v != v)


def _fmt(v) -> str:
    if not _present(v):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _where(study: str, tracking_uri: str, storage: str | None):
    from .stores import default_storage_url

    err.print(f"\nResults: Optuna study [bold]{study}[/] in {storage or default_storage_url()}; "
              f"MLflow runs in {tracking_uri}")
    err.print(f"Leaderboard again: automl trials --study {study}" + (f" --storage {storage}" if storage else ""))
    err.print("Browse and compare trials: automl ui   (then open http://127.0.0.1:5000)")


def main():
    app()


if __name__ == "__main__":
    main()
