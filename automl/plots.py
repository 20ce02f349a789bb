"""Plots of a search, as PNG files: logged on its MLflow parent run under `plots/` at the end of every
search, and embedded in `automl report` and notebooks/report.ipynb.

Optuna's own matplotlib visualisations draw the optimisation history, parameter importances,
parallel coordinates and the Pareto front; two small matplotlib figures of ours draw what Optuna
does not know: learning curves of the top trials (the per-epoch metrics of their MLflow child runs)
and the export comparison (`export_report.json` written by `automl export`).

PNG rather than plotly HTML: a plotly file needs plotly.js (~4.6 MB) inside it to open offline, a
PNG is ~30-80 KB, the MLflow UI shows it inline and the HTML report embeds it as a data URI.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from . import records, tracking
from .export.report import REPORT_FILE, ExportReport
from .ranking import leaderboard_trials, objective_names

TITLES = {
    "optimization_history": "Optimisation history",
    "param_importances": "Parameter importances (fANOVA)",
    "parallel_coordinate": "Parallel coordinates",
    "learning_curves": "Learning curves of the top trials",
    "training_diagnostics": "Inside training: gradient norms, activations, dead units",
    "pareto_front": "Pareto front",
    "export_comparison": "Export comparison",
}
MAX_PARALLEL_PARAMS = 8  # more axes than this are unreadable: keep the most important ones


class NotApplicable(Exception):
    """This plot does not apply to this search (the message says why); not an error."""


@dataclass
class PlotFiles:
    """What `search_plots` wrote: name -> PNG path; skipped (does not apply) and failed: name -> why."""

    files: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _pyplot():
    """pyplot on the file-only Agg backend, unless the caller already chose one (a notebook's inline)."""
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def prewarm():
    """Import the plotting stack (matplotlib, Optuna's plots, scikit-learn's forests for fANOVA: ~2 s
    of CPU) in a background thread while the first trials train, so the search's end does not wait."""
    import threading

    def imports():
        try:
            _ovm()
            import optuna.importance  # noqa: F401
        except Exception:
            pass

    threading.Thread(target=imports, name="automl-plots-import", daemon=True).start()


def _ovm():
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    _pyplot()
    from optuna.visualization import matplotlib as ovm

    return ovm


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _need(study: optuna.Study, n: int, what: str):
    if len(_complete(study)) < n:
        raise NotApplicable(f"{what} needs at least {n} complete trial{'s' if n > 1 else ''}")


def _need_spread(study: optuna.Study, what: str):
    """Importances explain differences: with every complete trial at one value there are none
    (fANOVA raises "zero total variance")."""
    _need(study, 2, what)
    if len({t.values[0] for t in _complete(study)}) < 2:
        raise NotApplicable(f"{what} need trials that score differently; every complete trial scored the same")


def _first_objective(study: optuna.Study) -> dict[str, Any]:
    """Optuna's `target` arguments: the first objective when there are several."""
    names = objective_names(study)
    if len(study.directions) > 1:
        return {"target": lambda t: t.values[0], "target_name": names[0]}
    return {"target_name": names[0]}


def _figure(ax):
    """Optuna returns an Axes, or an array of them for several subplots."""
    return ax.figure if hasattr(ax, "figure") else ax.flat[0].figure


# ---------------------------------------------------------------- Optuna's plots


def optimization_history(study: optuna.Study):
    """Objective value of every trial, and the best so far."""
    _need(study, 1, "the history")
    return _figure(_ovm().plot_optimization_history(study, **_first_objective(study)))


def importances(study: optuna.Study) -> dict[str, float]:
    """fANOVA importances of the first objective; 16 small trees keep it ~50 ms (the default 64 deep
    trees take ~0.3 s) and the seed keeps it the same on every call."""
    _need_spread(study, "importances")
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=16, max_depth=8, seed=0)
    target = _first_objective(study).get("target")
    return optuna.importance.get_param_importances(_static_ranges(study), evaluator=evaluator, target=target)


def param_importances(study: optuna.Study):
    """How much each parameter explains the objective (every objective when there are several)."""
    _need_spread(study, "importances")
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=16, max_depth=8, seed=0)
    study = _static_ranges(study)
    if len(study.directions) > 1:
        return _figure(_ovm().plot_param_importances(study, evaluator=evaluator))
    return _figure(_ovm().plot_param_importances(study, evaluator=evaluator, **_first_objective(study)))


def _static_ranges(study: optuna.Study) -> optuna.Study:
    """The study as Optuna's importances need it: a parameter whose range changes between trials (a
    space's `one_of`, e.g. SGD's learning rates beside Adam's) read over the union of its ranges, in
    an in-memory copy. Optuna leaves such a parameter out of the importances otherwise."""
    from optuna.distributions import FloatDistribution, IntDistribution

    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    seen: dict[str, set] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            seen.setdefault(name, set()).add(dist)
    union = {}
    for name, dists in seen.items():
        if len(dists) > 1 and all(isinstance(d, (FloatDistribution, IntDistribution)) for d in dists):
            first = next(iter(dists))
            low, high = min(d.low for d in dists), max(d.high for d in dists)
            union[name] = type(first)(low, high, log=first.log, step=first.step)
    if not union:
        return study
    widened = []
    for t in trials:
        t = optuna.trial.create_trial(
            state=t.state,
            values=t.values,
            params=t.params,
            distributions={n: union.get(n, d) for n, d in t.distributions.items()},
            user_attrs=t.user_attrs,
            intermediate_values=t.intermediate_values,
        )
        widened.append(t)
    copy = optuna.create_study(directions=study.directions)
    copy.add_trials(widened)
    return copy


def parallel_coordinate(study: optuna.Study, params: list[str] | None = None):
    """One line per trial across the (most important) parameters and the objective."""
    _need(study, 2, "parallel coordinates")
    if params is None:
        try:
            ranked = list(importances(study))
        except NotApplicable:  # every trial scored the same: no ranking, every parameter shown
            ranked = []
        params = ranked[:MAX_PARALLEL_PARAMS] if len(ranked) > MAX_PARALLEL_PARAMS else None
    fig = _figure(_ovm().plot_parallel_coordinate(study, params=params, **_first_objective(study)))
    fig.set_size_inches(max(6.4, 1.2 * len(fig.axes) + 2), 4.8)  # one y axis per parameter: room for each
    return fig


def pareto_front(study: optuna.Study):
    """Every complete trial in objective space, the non-dominated ones highlighted (2 or 3 objectives)."""
    if len(study.directions) < 2:
        raise NotApplicable("one objective: no Pareto front")
    if len(study.directions) > 3:
        raise NotApplicable(f"{len(study.directions)} objectives: Optuna draws Pareto fronts of 2 or 3")
    _need(study, 1, "the Pareto front")
    constrained = any(records.CONSTRAINTS in t.user_attrs for t in _complete(study))
    constraints = (lambda t: t.user_attrs.get(records.CONSTRAINTS, [])) if constrained else None
    return _figure(_ovm().plot_pareto_front(study, target_names=objective_names(study), constraints_func=constraints))


# ---------------------------------------------------------------- learning curves (MLflow)


def loss_metric(objective: str) -> str:
    """The second panel of the learning curves: validation loss, or training loss when that is the objective."""
    return "loss" if objective == "val_loss" else "val_loss"


def learning_curve_data(
    study: optuna.Study, tracking_uri: str, top_k: int = 5, metrics: list[str] | None = None
) -> dict[int, dict[str, list[tuple[int, float]]]]:
    """trial number -> metric -> [(epoch, value)] from the child runs of the `top_k` best trials."""
    objective = study.user_attrs.get(records.OBJECTIVE) or objective_names(study)[0]
    metrics = metrics or [objective, loss_metric(objective)]
    curves = {}
    for t in [t for t in leaderboard_trials(study) if t.user_attrs.get(records.MLFLOW_RUN_ID)][:top_k]:
        run_id = t.user_attrs[records.MLFLOW_RUN_ID]
        curves[t.number] = {
            m: [(step + 1, value) for step, value in tracking.metric_history(tracking_uri, run_id, m)] for m in metrics
        }  # steps are 0-based epochs
    return curves


def learning_curves(study: optuna.Study, tracking_uri: str | None, top_k: int = 5):
    """Objective and loss per epoch of the best trials, as logged by their MLflow child runs."""
    if not tracking_uri:
        raise NotApplicable("no MLflow tracking URI")
    curves = learning_curve_data(study, tracking_uri, top_k)
    if not curves:
        raise NotApplicable("no complete trial with an MLflow run")
    metrics = [m for m in next(iter(curves.values())) if any(c.get(m) for c in curves.values())]
    if not metrics:
        raise NotApplicable("the top trials' runs have no per-epoch metrics")
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for number, c in curves.items():
            if c.get(metric):
                epochs, values = zip(*c[metric])
                ax.plot(epochs, values, marker="o", markersize=3, label=f"trial {number}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.suptitle(f"Learning curves of the top {len(curves)} trials")
    fig.tight_layout()
    return fig


def training_diagnostics(study: optuna.Study, tracking_uri: str | None, top_k: int = 5):
    """What diagnostics.py logged: the gradient norm per epoch of the top trials, and the best trial's
    activation spread and dead-unit share per block (its diagnosis in the title)."""
    if not tracking_uri:
        raise NotApplicable("no MLflow tracking URI")
    top = [t for t in leaderboard_trials(study) if t.user_attrs.get(records.MLFLOW_RUN_ID)][:top_k]
    if not top or records.DIAGNOSIS not in top[0].user_attrs:
        raise NotApplicable("no complete trial with diagnostics (a search with diagnostics=False)")
    best_run = top[0].user_attrs[records.MLFLOW_RUN_ID]
    names = tracking.run_facts(tracking_uri, best_run)["metrics"]
    panels = {
        "grad_global_norm": {t.number: t.user_attrs[records.MLFLOW_RUN_ID] for t in top},
        "act_std": {n.split("/", 1)[1]: n for n in names if n.startswith("act_std/")},
        "dead_units": {n.split("/", 1)[1]: n for n in names if n.startswith("dead_units/")},
    }
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for number, run_id in panels["grad_global_norm"].items():
        history = tracking.metric_history(tracking_uri, run_id, "grad_global_norm")
        epochs, values = [e + 1 for e, _ in history], [v for _, v in history]
        axes[0].plot(epochs, values, marker="o", markersize=3, label=f"trial {number}")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize="small")
    for ax, key in zip(axes[1:], ("act_std", "dead_units")):
        for block, metric in panels[key].items():
            history = tracking.metric_history(tracking_uri, best_run, metric)
            if history:
                ax.plot([e + 1 for e, _ in history], [v for _, v in history], marker="o", markersize=3, label=block)
        ax.legend(fontsize="x-small")
    for ax, title in zip(axes, ("gradient global norm", "activation std per block", "dead units per block")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Inside training: trial {top[0].number} ({top[0].user_attrs[records.DIAGNOSIS]})")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- export comparison


def load_export_report(
    tracking_uri: str | None = None, run_id: str | None = None, export_dir: str | Path | None = None
) -> ExportReport | None:
    """The export report in `export_dir` (must be there), else the one in the parent run's `export/`
    artifacts (None when no export ran)."""
    if export_dir is not None:
        return ExportReport.read(export_dir)
    if not (tracking_uri and run_id) or not tracking.has_artifact(tracking_uri, run_id, "export", REPORT_FILE):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return ExportReport.read(tracking.download_artifact(tracking_uri, run_id, f"export/{REPORT_FILE}", tmp))


def export_comparison(report: ExportReport | None):
    """Size against score, and latency, of every exported file."""
    rows = [r for r in (report.rows(include_failed=False) if report else []) if r["size_kb"] is not None]
    if not rows:
        raise NotApplicable("no export report (run `automl export`)")
    plt = _pyplot()
    timed = [r for r in rows if r["latency_p50_ms"] is not None]
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(11 if timed else 6, 4), squeeze=False)
    ax = axes[0][0]
    scored = [r for r in rows if r["value"] is not None]
    if scored:
        ax.scatter([r["size_kb"] for r in scored], [r["value"] for r in scored])
        for r in scored:
            ax.annotate(
                r["variant"], (r["size_kb"], r["value"]), fontsize="small", xytext=(4, 4), textcoords="offset points"
            )
        ax.set_ylabel(scored[0]["metric"])
        ax.set_title(f"{scored[0]['metric']} against file size")
    else:
        ax.barh([r["variant"] for r in rows], [r["size_kb"] for r in rows])
        ax.set_title("file size")
    ax.set_xlabel("size (KB)")
    ax.grid(alpha=0.3)
    if timed:
        ax = axes[0][1]
        ax.barh([r["variant"] for r in timed], [r["latency_p50_ms"] for r in timed])
        ax.set_xlabel("latency p50 (ms, batch 1)")
        ax.set_title("latency")
        ax.invert_yaxis()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- all of them


def search_plots(
    study: optuna.Study,
    out_dir: str | Path,
    tracking_uri: str | None = None,
    export_report: ExportReport | None = None,
    top_k: int = 5,
    dpi: int = 90,
) -> PlotFiles:
    """Write every plot that applies as `<name>.png` in `out_dir`. A plot that does not apply is
    `skipped`, one that raises is `failed` (with the error): neither stops the others."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = PlotFiles()
    makers = {
        "optimization_history": lambda: optimization_history(study),
        "param_importances": lambda: param_importances(study),
        "parallel_coordinate": lambda: parallel_coordinate(study),
        "learning_curves": lambda: learning_curves(study, tracking_uri, top_k),
        "training_diagnostics": lambda: training_diagnostics(study, tracking_uri, top_k),
        "pareto_front": lambda: pareto_front(study),
        "export_comparison": lambda: export_comparison(export_report),
    }
    plt = _pyplot()
    for name, make in makers.items():
        fig, before = None, set(plt.get_fignums())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # matplotlib's notes on flat axes of a constant parameter
                fig = make()
                path = out / f"{name}.png"
                fig.savefig(path, dpi=dpi, bbox_inches="tight")
            made.files[name] = path
        except NotApplicable as exc:
            made.skipped[name] = str(exc)
        except Exception as exc:
            made.failed[name] = f"{type(exc).__name__}: {exc}"
        finally:
            if fig is not None:
                plt.close(fig)
            for number in set(plt.get_fignums()) - before:  # one Optuna opened before it raised
                plt.close(number)
    return made


def log_search_plots(study: optuna.Study, tracking_uri: str, run_id: str, out_dir: str | Path) -> PlotFiles:
    """The end of every search: plots (with the export comparison if an export is on the run)
    written to `out_dir` and logged on the parent run under `plots/`."""
    try:
        export = load_export_report(tracking_uri, run_id)
    except Exception:
        export = None
    made = search_plots(study, out_dir, tracking_uri=tracking_uri, export_report=export)
    if made.files:
        tracking.log_to_run(tracking_uri, run_id, {}, {}, artifacts=(out_dir, "plots"))
    return made
