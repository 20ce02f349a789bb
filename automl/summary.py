"""What a finished search leaves on its MLflow parent run: trial counts, the leaderboard
(`trials.csv`), the best trial's parameters and model (or the Pareto front), and the search plots.

Why its own module: the orchestrator (search.py) runs trials; this is the record people open in
the MLflow UI afterwards, written once by whoever ends the search (the driver, on Ray).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from . import records
from .ranking import count, leaderboard_trials
from .results import SearchResult, leaderboard
from .tracking import Tracker


def record_search_end(
    tracker: Tracker, result: SearchResult, objective: str, status: str, say: Callable[[str], None] | None
):
    """Log the end of the search on its parent run; `say` (None: quiet) tells what could not be made."""
    study = result.study
    counts = {s.name.lower(): count(study, (s,)) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    metrics: dict[str, float] = {f"trials_{k}": v for k, v in counts.items()}
    artifacts: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "trials.csv"
        leaderboard(study, None).to_csv(table, index=False)
        artifacts[""] = str(table)
        if len(study.directions) > 1:
            front = result.pareto_front()
            front.to_csv(Path(tmp) / "pareto_front.csv", index=False)
            artifacts["pareto"] = str(Path(tmp) / "pareto_front.csv")
            metrics["pareto_front_size"] = len(front)
        elif top := leaderboard_trials(study):
            best = top[0]
            assert best.value is not None  # a complete single-objective trial has its value
            metrics[f"best_{objective}"] = best.value
            params = best.user_attrs.get(records.PARAMS, best.params)
            (Path(tmp) / "best_params.json").write_text(
                json.dumps({"trial": best.number, "value": best.value, "params": params}, indent=2, default=str)
            )
            artifacts["best"] = str(Path(tmp) / "best_params.json")
            try:
                artifacts["best_model"] = str(result.best_model_path(Path(tmp) / "model"))
            except Exception as exc:
                _tell(say, f"best model not attached to the search run: {exc}")
        _plots(tracker, study, Path(tmp) / "plots", say)
        others_running = count(study, (TrialState.RUNNING,)) > 0  # other workers, still at work
        tracker.finish_search(status, metrics, artifacts, terminate=not others_running)
    if say is not None:
        say(
            f"search {study.study_name}: {counts['complete']} complete, {counts['pruned']} pruned, "
            f"{counts['fail']} failed; MLflow run {tracker.parent_run_id}"
        )


def _plots(tracker: Tracker, study: optuna.Study, out: Path, say: Callable[[str], None] | None):
    """Plots onto the parent run under `plots/` (automl.plots); a plot that fails is reported and
    the search goes on."""
    try:
        from .plots import log_search_plots

        problems = log_search_plots(study, tracker.tracking_uri, tracker.search_run_id, out).failed
    except Exception as exc:
        problems = {"plots": f"{type(exc).__name__}: {exc}"}
    for name, why in problems.items():
        _tell(say, f"plot {name} not made: {why}")


def _tell(say: Callable[[str], None] | None, text: str):
    if say is not None:
        say(f"[yellow]{text}[/]")
    else:
        warnings.warn(text, RuntimeWarning, stacklevel=3)
