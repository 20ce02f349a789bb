"""One search as a report: summary, leaderboard, plots, best architecture and export table.

`build_report` gathers the pieces from the Optuna study and its MLflow runs; `Report.html()` puts
them in one self-contained HTML file (plots as PNG data URIs, no scripts, no network) for
`automl report`, and notebooks/report.ipynb shows the same pieces inline. TensorFlow loads only
for the model summary of the best trial (`model_summary=False` skips it).
"""

from __future__ import annotations

import base64
import html
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from . import records, tracking
from .plots import TITLES, load_export_report, search_plots
from .ranking import leaderboard_trials, objective_names
from .results import leaderboard, load_result

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Report:
    """The pieces of a search report; `html()` renders them as one file."""

    study: str
    objectives: list[str]
    directions: list[str]
    counts: dict[str, int]
    leaderboard: pd.DataFrame
    plots: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    notes: dict[str, str] = field(default_factory=dict)  # piece -> why it is missing
    best: dict[str, Any] | None = None  # trial, value(s), params
    architecture: str | None = None  # Keras model summary of the best trial
    export: pd.DataFrame | None = None  # one row per exported file
    settings: dict[str, str] = field(default_factory=dict)  # the parent run's parameters
    mlflow: dict[str, str] = field(default_factory=dict)  # tracking URI, experiment, parent run

    def html(self) -> str:
        return render_html(self)

    def write_html(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.html(), encoding="utf-8")
        return path


def build_report(
    study_name: str,
    storage: str | None = None,
    tracking_uri: str | None = None,
    *,
    export_dir: str | Path | None = None,
    top: int | None = 20,
    model_summary: bool = True,
) -> Report:
    """Read the study and its MLflow runs; `KeyError` when the study is not in the storage, and
    `FileNotFoundError` when `export_dir` has no export_report.json."""
    result = load_result(study_name, storage, tracking_uri)
    study = result.study
    states = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL", "running": "RUNNING"}
    counts = {k: sum(t.state.name == s for t in study.get_trials(deepcopy=False)) for k, s in states.items()}
    report = Report(
        study=study.study_name,
        objectives=objective_names(study),
        directions=[d.name.lower() for d in study.directions],
        counts=counts,
        leaderboard=leaderboard(study, top),
    )
    report.mlflow = {"tracking URI": result.tracking_uri, "parent run": result.mlflow_run_id or "-"}
    _mlflow_facts(report, result)
    export = load_export_report(result.tracking_uri, result.mlflow_run_id, export_dir) if export_dir else None
    if export is None and result.mlflow_run_id:
        try:
            export = load_export_report(result.tracking_uri, result.mlflow_run_id)
        except Exception as exc:
            report.notes["export"] = f"export report unreadable: {exc}"
    rows = export.rows() if export is not None else []
    if rows:
        df = pd.DataFrame(rows).drop(columns=["recommended"])
        metrics = df["metric"].dropna().unique()
        report.export = df.rename(columns={"value": metrics[0]}).drop(columns="metric") if len(metrics) == 1 else df
    elif "export" not in report.notes:
        report.notes["export"] = f"no export yet: automl export --study {study.study_name} --out DIR"
    with tempfile.TemporaryDirectory() as tmp:
        made = search_plots(study, tmp, tracking_uri=result.tracking_uri, export_report=export)
        report.plots = {name: path.read_bytes() for name, path in made.files.items()}
        report.notes.update({f"plot {k}": v for k, v in {**made.skipped, **made.failed}.items()})
    top_trials = leaderboard_trials(study)
    if top_trials:
        t = top_trials[0]
        values = dict(zip(report.objectives, t.values))
        report.best = {"trial": t.number, **values, "params": dict(t.user_attrs.get(records.PARAMS, t.params))}
        if model_summary:
            try:
                report.architecture = architecture_summary(result.tracking_uri, t)
            except Exception as exc:
                report.notes["architecture"] = f"trial {t.number}: {type(exc).__name__}: {exc}"
    else:
        report.notes["best"] = "no feasible complete trial yet"
    return report


def _mlflow_facts(report: Report, result):
    """Experiment name and the search settings logged on the parent run."""
    if not result.mlflow_run_id:
        report.notes["mlflow"] = "the study records no MLflow parent run"
        return
    try:
        facts = tracking.run_facts(result.tracking_uri, result.mlflow_run_id)
        report.mlflow["experiment"], report.mlflow["status"] = facts["experiment"], facts["status"]
        report.settings = dict(sorted(facts["params"].items()))
    except Exception as exc:
        report.notes["mlflow"] = f"MLflow run unreadable: {exc}"


def architecture_summary(tracking_uri: str, trial) -> str:
    """`model.summary()` of a trial's saved `.keras` model (downloaded from its MLflow run)."""
    artifact, run_id = trial.user_attrs.get(records.MODEL_ARTIFACT), trial.user_attrs.get(records.MLFLOW_RUN_ID)
    if not artifact or not run_id:
        raise FileNotFoundError("no saved model")
    from .saved import load_model

    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.download_artifact(tracking_uri, run_id, artifact, tmp)
        model = load_model(path)
    lines: list[str] = []
    model.summary(print_fn=lambda text, *args, **kwargs: lines.append(str(text)), line_length=100)
    return ANSI.sub("", "\n".join(lines)).strip()


# ---------------------------------------------------------------- HTML

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: .8rem; overflow-x: auto; font-size: .8rem; }
.note { color: #777; font-size: .85rem; } .facts td { text-align: left; } .scroll { overflow-x: auto; }
"""


def _table(df: pd.DataFrame, table_id: str) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) and v == v else v  # NaN stays NaN: shown as na_rep

    table = df.map(fmt).to_html(index=False, na_rep="-", border=0, table_id=table_id, escape=True)
    return f'<div class="scroll">{table}</div>'  # wide leaderboards scroll on their own


def _facts(items: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items.items())
    return f'<table class="facts">{rows}</table>'


def render_html(report: Report) -> str:
    e = html.escape
    goal = ", ".join(f"{n} ({d})" for n, d in zip(report.objectives, report.directions))
    parts = [
        f"<h1>Search report: {e(report.study)}</h1>",
        f'<p class="note">objective {e(goal)} · generated {datetime.now():%Y-%m-%d %H:%M} by automl report</p>',
        '<h2 id="summary">Summary</h2>',
        _facts({"trials": ", ".join(f"{v} {k}" for k, v in report.counts.items()), **report.mlflow}),
    ]
    if report.best:
        values = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in report.best.items() if k != "params"}
        parts.append(f"<p>Best trial: {e(', '.join(f'{k} {v}' for k, v in values.items()))}</p>")
    parts += [
        '<h2 id="leaderboard">Leaderboard</h2>',
        _table(report.leaderboard, "leaderboard") if not report.leaderboard.empty else "<p>no trials yet</p>",
        '<h2 id="plots">Plots</h2>',
    ]
    for name, png in report.plots.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="plot-{name}"><img alt="{e(TITLES.get(name, name))}" '
            f'src="data:image/png;base64,{data}"><figcaption>{e(TITLES.get(name, name))}</figcaption></figure>'
        )
    plot_notes = {k: v for k, v in report.notes.items() if k.startswith("plot ")}
    if plot_notes:
        parts.append("<ul class=note>" + "".join(f"<li>{e(k)}: {e(v)}</li>" for k, v in plot_notes.items()) + "</ul>")
    parts.append('<h2 id="architecture">Best architecture</h2>')
    if report.best:
        parts.append(f"<p>Trial {report.best['trial']}'s sampled configuration:</p>")
        parts.append(_facts(report.best["params"]))
    if report.architecture:
        parts.append(f"<pre>{e(report.architecture)}</pre>")
    for key in ("best", "architecture"):
        if key in report.notes:
            parts.append(f'<p class="note">{e(report.notes[key])}</p>')
    parts.append('<h2 id="export">Export</h2>')
    if report.export is not None:
        parts.append(_table(report.export, "export"))
    if "export" in report.notes:
        parts.append(f'<p class="note">{e(report.notes["export"])}</p>')
    if report.settings:
        parts += ['<h2 id="settings">Search settings</h2>', _facts(report.settings)]
    if "mlflow" in report.notes:
        parts.append(f'<p class="note">{e(report.notes["mlflow"])}</p>')
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(report.study)}: automl report</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
