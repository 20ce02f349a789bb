"""`automl` command line. Imports stay light at start-up: TensorFlow loads only inside `search`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .cli_check import check
from .cli_export import export
from .cli_predict import predict
from .console import (
    USAGE_ERROR,
    err,
    fail,
    hide_tensorflow_startup_log,
    no_study,
    out,
    parse_image_size,
    print_leaderboard,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Keras architecture + hyperparameter search on Optuna, tracked in MLflow.",
)

app.command()(check)  # automl check: cli_check.py
app.command()(predict)  # automl predict: cli_predict.py
app.command()(export)  # automl export: cli_export.py


@app.command()
def search(
    space: str | None = typer.Argument(
        None,
        help="Space YAML file, or a shipped space name (see `automl spaces`). Left out: the task classes' "
        "defaults for the data's kind (its space, val_loss, tpe-random, epochs by data size, ensemble).",
    ),
    data: str = typer.Option(
        ..., "--data", help="digits | breast_cancer | wine | diabetes | PATH.csv | PATH.parquet | PATH.npz | FOLDER"
    ),
    target: str | None = typer.Option(None, "--target", help="Target column of a CSV file."),
    task: str | None = typer.Option(
        None,
        "--task",
        help="classification | regression (default: regression for decimal targets and for whole numbers "
        "with many values, such as prices or counts; classification for the rest).",
    ),
    trials: int | None = typer.Option(
        None, "--trials", help="Finished trials wanted (a rerun completes the rest); 10, or with --timeout no cap."
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="Wall-clock budget in seconds."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Maximum epochs per trial (10; without SPACE: by training-set size, 10-30)."
    ),
    study: str | None = typer.Option(
        None, "--study", help="Study name (default: SPACE-DATA, or KIND-DATA without SPACE); same name resumes."
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage: journal file path or sqlite:// / postgresql:// URL."
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default sqlite:///mlruns/mlflow.db)."
    ),
    sampler: str | None = typer.Option(
        None,
        "--sampler",
        help="tpe (default; tpe-random without SPACE) | tpe-random | random | grid | cmaes | qmc | nsga2 | gp | "
        "kt-random | kt-bayesian | kt-hyperband",
    ),
    pruner: str | None = typer.Option(
        None,
        "--pruner",
        help="median (default; successive-halving with --schedule budget) | percentile | successive-halving | "
        "hyperband | patient | none",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for the sampler, data split and weights."),
    objective: list[str] | None = typer.Option(
        None,
        "--objective",
        help=(
            "Metric to optimise (default val_accuracy / val_loss); repeat for several objectives, e.g. "
            "--objective val_accuracy --objective latency_ms (costs: param_count, model_size_bytes, "
            "tflite_size_bytes, latency_ms; NAME:max / NAME:min sets the direction)."
        ),
    ),
    constraint: list[str] | None = typer.Option(
        None,
        "--constraint",
        help="NAME<=NUMBER, e.g. tflite_size_bytes<=200000; repeatable. Infeasible trials never win.",
    ),
    max_epochs_total: int | None = typer.Option(None, "--max-epochs-total", help="Budget of epochs over all trials."),
    enqueue: Path | None = typer.Option(
        None, "--enqueue", help="YAML/JSON file with a list of configurations (flat parameter names) to try first."
    ),
    start: bool = typer.Option(
        True,
        "--start/--no-start",
        help="A new study first tries the space's `start` configurations (known-good models).",
    ),
    warm_start: str | None = typer.Option(
        None, "--warm-start", help="Another study (same storage) whose top-k configurations are tried first."
    ),
    top_k: int = typer.Option(5, "--top-k", help="How many configurations --warm-start takes."),
    continue_from: str | None = typer.Option(
        None, "--continue-from", help="Another study with the same space whose finished trials seed the sampler."
    ),
    direction: str | None = typer.Option(
        None, "--direction", help="maximize | minimize (default: from the objective)."
    ),
    validation_split: float = typer.Option(
        0.2, "--validation-split", help="Share of the data held out for validation."
    ),
    image_size: str | None = typer.Option(
        None, "--image-size", help="HEIGHTxWIDTH: resize a folder's images to it (needed when their sizes differ)."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bar or trial lines: print only the leaderboard (scripts)."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show TensorFlow's C++ start-up log lines (hidden by default)."
    ),
    isolate: bool = typer.Option(
        False,
        "--isolate",
        help="A fresh process for every trial (default: one worker process, replaced after --recycle-mb of growth).",
    ),
    in_process: bool = typer.Option(
        False, "--in-process", help="Train trials in this process (TensorFlow's memory then grows with every trial)."
    ),
    recycle_mb: float = typer.Option(
        400,
        "--recycle-mb",
        help="MB a worker process may grow by (TensorFlow keeps every model's graph) before it is replaced.",
    ),
    memory_limit: float | None = typer.Option(
        None, "--memory-limit", help="MB of resident memory a trial process may use before it is killed."
    ),
    retry_dead: bool = typer.Option(
        False, "--retry-dead", help="Enqueue again the configurations of trials whose worker died."
    ),
    worker: int = typer.Option(
        0,
        "--worker",
        help="Index of this worker when several share a study and a --seed: each samples its own sequence.",
    ),
    ensemble: bool | None = typer.Option(
        None,
        "--ensemble/--no-ensemble",
        help="At the end, choose an ensemble of the top trials (for export --ensemble; default without SPACE).",
    ),
    ensemble_size: int = typer.Option(20, "--ensemble-size", help="Rounds of greedy ensemble selection."),
    schedule: str | None = typer.Option(
        None,
        "--schedule",
        help="full (default), or budget (with --timeout; default without SPACE): explore at low fidelity, "
        "then continue the best to full length.",
    ),
    diagnostics: bool = typer.Option(
        True, "--diagnostics/--no-diagnostics", help="Gradients, activations and a diagnosis per trial."
    ),
    check_data: bool = typer.Option(True, "--check-data/--no-check-data", help="The data checks at the start."),
    unlabeled: str | None = typer.Option(
        None, "--unlabeled", help="Samples without labels (a folder of images, or PATH.npz with x) to pretrain on."
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        help="GPU(s) this worker may use, e.g. 0 or 0,1 (sets CUDA_VISIBLE_DEVICES); 'cpu' hides all GPUs.",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Run --workers on a Ray cluster: ADDRESS (host:port, ray://host:port), auto (the running one), "
        "or local (start one here, stop it at the end). Needs automl[ray].",
    ),
    workers: int = typer.Option(1, "--workers", help="Ray workers sharing the study (with --ray)."),
    cpus_per_trial: float = typer.Option(1, "--cpus-per-trial", help="CPUs Ray reserves per worker (its TF threads)."),
    gpus_per_trial: float = typer.Option(0, "--gpus-per-trial", help="GPUs Ray assigns per worker (0: none)."),
):
    """Run (or resume) a search and print the leaderboard."""
    if not verbose:
        hide_tensorflow_startup_log()
    if device is not None:  # before TensorFlow loads, or it would already have claimed every GPU
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else device
    from .data import DataError, load_data
    from .errors import NoCompleteTrial
    from .space import SpaceError, load_configurations, load_space
    from .stores import StoreError

    if isolate and in_process:
        fail("--isolate and --in-process contradict each other: choose one")
    if workers != 1 and not ray:
        fail(f"--workers {workers} needs --ray (or start `automl search --worker I` processes yourself)")
    if ray and device is not None:
        fail("--device and --ray contradict each other: Ray assigns GPUs (--gpus-per-trial)")
    try:
        space_obj = load_space(space) if space else None  # before TensorFlow loads: a bad file fails in a blink
        size = parse_image_size(image_size)
        kind = space_obj.input if space_obj else None  # a text space reads a CSV's column as texts
        dataset = load_data(
            data, target, validation_split=validation_split, seed=seed or 0, image_size=size, kind=kind, task=task
        )
        from .search import Search
        from .tasks import task_settings

        auto = task_settings(dataset.kind, dataset.num_train) if space_obj is None else {}
        result = Search(
            space_obj or load_space(auto["space"]),
            study_name=study or (f"{dataset.kind}-{dataset.name}".replace(":", "-") if auto else None),
            objective=None if objective else auto.get("objective"),
            storage=storage,
            tracking_uri=tracking_uri,
            sampler=sampler or auto.get("sampler", "tpe"),
            pruner=pruner,
            seed=seed,
            direction=direction,
            objectives=list(objective) if objective else None,
            constraints=constraint,
            max_epochs_total=max_epochs_total,
            enqueue=load_configurations(enqueue) if enqueue else None,
            start=start,
            warm_start=warm_start,
            warm_start_top_k=top_k,
            continue_from=continue_from,
            max_trials=trials,
            timeout=timeout,
            verbose=not quiet,
            isolate=False if in_process else (True if isolate else None),
            recycle_mb=recycle_mb,
            memory_limit_mb=memory_limit,
            retry_dead=retry_dead,
            worker=worker,
            ensemble=auto.get("ensemble", False) if ensemble is None else ensemble,
            ensemble_size=ensemble_size,
            schedule=schedule or auto.get("schedule", "full"),
            diagnostics=diagnostics,
            check_data=check_data,
            ray=ray,
            workers=workers,
            resources_per_trial={"CPU": cpus_per_trial, "GPU": gpus_per_trial},
        ).fit(data=dataset, epochs=auto.get("epochs", 10) if epochs is None else epochs, unlabeled=unlabeled)
    except NoCompleteTrial as exc:  # the search ran, but its result is no answer
        if exc.result is not None:
            print_leaderboard(exc.result.study, k=10)
        fail(str(exc), code=1)
    except (SpaceError, DataError, StoreError) as exc:
        fail(str(exc))
    except ValueError as exc:  # SearchError and bad sampler/pruner names
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted: finished trials are saved; run the same command to resume")
        raise typer.Exit(130) from None
    print_leaderboard(result.study, k=10)
    if not quiet:
        _where(result.study.study_name, result.tracking_uri, storage)


@app.command()
def trials(
    study: str = typer.Option(..., "--study", help="Study name."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage (default mlruns/optuna.journal)."),
    top: int = typer.Option(20, "--top", help="Rows to show (0: all)."),
    csv: Path | None = typer.Option(None, "--csv", help="Also write the whole table to this CSV file."),
):
    """Leaderboard of a study's trials."""
    import optuna

    from .results import leaderboard
    from .stores import StoreError, open_storage

    try:
        st = optuna.load_study(study_name=study, storage=open_storage(storage))
    except StoreError as exc:
        fail(str(exc))
    except KeyError:
        no_study(study, storage)
    if csv:
        leaderboard(st, None).to_csv(csv, index=False)
    print_leaderboard(st, k=top or None)


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
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow store (default sqlite:///mlruns/mlflow.db)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 127.0.0.1 keeps it private."),
    port: int = typer.Option(5000, "--port"),
    study: str | None = typer.Option(
        None, "--study", help="Print the runs table of this study's experiment (default: the latest search's)."
    ),
):
    """Open the MLflow UI on the local store and print the address of the latest search's runs table."""
    import os
    import signal
    import subprocess

    from .errors import StoreError
    from .servers import runs_page, stop_process_group, wait_until_serving
    from .stores import default_artifact_location, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        fail(f"{uri}: no MLflow store here (run a search first, or pass --tracking-uri)")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if artifacts := default_artifact_location(uri):
        cmd += ["--default-artifact-root", artifacts]
    local = host in ("127.0.0.1", "localhost", "0.0.0.0", "::")
    shown = "127.0.0.1" if local else f"[{host}]" if ":" in host else host
    if not local and not os.environ.get("MLFLOW_SERVER_ALLOWED_HOSTS"):
        # MLflow answers only Host headers of localhost and private networks: also the address it is bound to
        cmd += ["--allowed-hosts", f"{shown},{shown}:{port}"]

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    server = None
    try:
        # its own session: the server and its workers (uvicorn, job runner) are one group, stopped together
        server = subprocess.Popen(cmd, start_new_session=True)
        base = f"http://{shown}:{port}"
        if wait_until_serving(base, server):
            err.print(f"MLflow UI: {runs_page(base, study, uri)}  (Ctrl-C to stop)", soft_wrap=True)
        code = server.wait()
    except KeyboardInterrupt:
        code = 130
    except StoreError as exc:  # --study names no experiment
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        code = USAGE_ERROR
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        if server is not None:
            stop_process_group(server)
    raise typer.Exit(code)


@app.command()
def report(
    study: str = typer.Option(..., "--study", help="Study name."),
    out_file: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write (one self-contained file)."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage (default mlruns/optuna.journal)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the study's)."),
    export_dir: Path | None = typer.Option(
        None,
        "--export-dir",
        help="Folder of an `automl export` (default: the export logged on the search's MLflow run).",
    ),
    top: int = typer.Option(20, "--top", help="Leaderboard rows (0: all)."),
    model_summary: bool = typer.Option(
        True, "--model-summary/--no-model-summary", help="Keras summary of the best model (loads TensorFlow)."
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Also show TensorFlow's C++ start-up log lines."),
):
    """Write a search's report as one HTML file: leaderboard, plots, best architecture, export table."""
    if not verbose:
        hide_tensorflow_startup_log()
    from .stores import StoreError

    if out_file.is_dir() or not out_file.parent.is_dir():
        fail(
            f"--out {out_file}: "
            + ("is a folder; give a file name" if out_file.is_dir() else f"folder {out_file.parent} does not exist")
        )
    if export_dir is not None and not (export_dir / "export_report.json").is_file():
        fail(f"--export-dir {export_dir}: no export_report.json there (run `automl export --out {export_dir}` first)")
    from .report import build_report

    try:
        rep = build_report(
            study, storage, tracking_uri, export_dir=export_dir, top=top or None, model_summary=model_summary
        )
    except StoreError as exc:
        fail(str(exc))
    except KeyError:
        no_study(study, storage)
    rep.write_html(out_file)
    err.print(
        f"report of {rep.study} ({sum(rep.counts.values())} trials, {len(rep.plots)} plots"
        f"{', export table' if rep.export is not None else ''}) written to {out_file}",
        soft_wrap=True,  # a path broken over two lines cannot be copied
    )


@app.command()
def dashboard(
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage (default mlruns/optuna.journal)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 127.0.0.1 keeps it private."),
    port: int = typer.Option(8080, "--port"),
):
    """Open optuna-dashboard on the Optuna storage (optional extra: pip install 'automl\\[dashboard]')."""
    from .stores import StoreError, default_storage_url, open_storage

    try:
        from optuna_dashboard import run_server
    except ImportError:
        fail("optuna-dashboard is not installed: pip install 'automl\\[dashboard]' (or optuna-dashboard)")
    url = storage or default_storage_url()
    if "://" not in url and not Path(url).is_file():
        fail(f"{url}: no Optuna journal file here (run a search first, or pass --storage)")
    try:
        opened = open_storage(url)
    except StoreError as exc:
        fail(str(exc))
    err.print(f"optuna-dashboard on http://{host}:{port} for {url}  (Ctrl-C to stop)")
    run_server(opened, host=host, port=port)


def _where(study: str, tracking_uri: str, storage: str | None):
    from .stores import default_storage_url, default_tracking_uri

    err.print(
        f"\nResults: Optuna study [bold]{study}[/] in {storage or default_storage_url()}; "
        f"MLflow runs in {tracking_uri}",
        soft_wrap=True,
    )
    where = f" --storage {storage}" if storage else ""
    err.print(f"Leaderboard again: automl trials --study {study}{where}", soft_wrap=True)
    default = tracking_uri == default_tracking_uri()
    uri = "" if default else f" --tracking-uri {tracking_uri}"
    err.print(f"Predict new samples: automl predict --study {study}{where}{uri} --data NEW_FILE", soft_wrap=True)
    if tracking_uri.startswith(("http://", "https://")):
        err.print(f"Browse and compare trials: {tracking_uri} (the experiment {study}, its Runs tab)", soft_wrap=True)
    else:
        err.print(
            f"Browse and compare trials: automl ui --study {study}{uri}"
            + "   (prints the address of this search's runs table)",
            soft_wrap=True,
        )


if __name__ == "__main__":  # python -m automl.cli (the console script calls `app`)
    app()
