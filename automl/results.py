"""Reading a search back: leaderboard, best parameters, best model. No TensorFlow import here
except in `best_model()`, so `automl trials` stays fast."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import optuna
import pandas as pd

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
COPIED_ATTR = "copied_from"  # trials copied in from another study (continue_from)
TIEBREAK_ATTR = "tiebreak_val_loss"  # val_loss at the trial's best epoch: orders trials with equal values


def feasible(t: optuna.trial.FrozenTrial) -> bool:
    """Meets every constraint of the search (always, without constraints)."""
    return all(c <= 0 for c in t.user_attrs.get("constraints", []))


def objective_names(study: optuna.Study) -> list[str]:
    names = study.user_attrs.get("objectives") or [study.user_attrs.get("objective", "value")]
    return list(names) if len(names) == len(study.directions) else [f"value_{i}" for i in range(len(study.directions))]


def leaderboard_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Feasible complete trials, best first (by the first objective when there are several)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if feasible(t)]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return sorted(done, key=lambda t: (*rank_key(t.values[0], t.user_attrs.get(TIEBREAK_ATTR), maximize), t.number))


def rank_key(value: float, tiebreak_loss: float | None, maximize: bool) -> tuple:
    """Sort key, best first: the objective, then (for equal values) the lower validation loss.

    Why: accuracy on a small validation set moves in steps of one sample, so several trials often
    share the best value; the one whose probabilities fit the validation data better is the safer
    pick (the rule BestEpochStopping applies to a trial's epochs).
    """
    loss = tiebreak_loss if tiebreak_loss is not None and math.isfinite(tiebreak_loss) else math.inf
    return (-value if maximize else value, loss)


def pareto_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The non-dominated feasible complete trials."""
    from .objectives import dominates

    directions = [d.name.lower() for d in study.directions]
    done = leaderboard_trials(study)
    return [t for t in done if not any(dominates(o.values, t.values, directions) for o in done if o is not t)]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective value(s), epochs, seconds, parameters, failure reason."""
    rows = []
    names = objective_names(study)
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        values = dict(zip(names, t.values)) if t.values and len(names) > 1 else {}
        measured = {k: v for k, v in t.user_attrs.get("objectives", {}).items() if k not in values}
        rows.append({"trial": t.number, "state": t.state.name,
                     "value": t.values[0] if t.values else None, **values, **measured,
                     **({"feasible": feasible(t)} if "constraints" in t.user_attrs else {}),
                     "epochs": t.user_attrs.get("epochs_run"), "params_count": t.user_attrs.get("param_count"),
                     "seconds": seconds, **t.user_attrs.get("params", t.params),
                     "fail_reason": t.user_attrs.get("fail_reason")})
    return pd.DataFrame(rows)


def leaderboard(study: optuna.Study, k: int | None = 10) -> pd.DataFrame:
    """Feasible completed trials best first (first objective), then the others by trial number."""
    df = trials_frame(study)
    if df.empty:
        return df
    order = {t.number: i for i, t in enumerate(leaderboard_trials(study))}
    df["_rank"] = df.trial.map(order)
    out = pd.concat([df[df._rank.notna()].sort_values("_rank"), df[df._rank.isna()]]).drop(columns="_rank")
    return out.head(k) if k else out


class SearchResult:
    """What `Search.fit` returns; also rebuilt from a stored study by `load_result`."""

    def __init__(self, study: optuna.Study, tracking_uri: str, mlflow_run_id: str | None,
                 objective: str, dataset=None):
        self.study, self.tracking_uri, self.mlflow_run_id = study, tracking_uri, mlflow_run_id
        self.objective, self.dataset = objective, dataset

    @property
    def best_trial(self) -> optuna.trial.FrozenTrial:
        """The best feasible complete trial; with several objectives, choose with `select(...)`."""
        if len(self.study.directions) > 1:
            raise ValueError(f"this search has several objectives ({', '.join(objective_names(self.study))}): "
                             "pick a trial of result.pareto_front() with result.select('<objective>') "
                             "or best_model(select=...)")
        top = leaderboard_trials(self.study)
        if not top:
            raise ValueError(f"study {self.study.study_name!r} has no feasible complete trial")
        return top[0]

    @property
    def best_value(self) -> float:
        return self.best_trial.value

    def pareto_front(self) -> pd.DataFrame:
        """The non-dominated feasible trials with their objectives and parameters."""
        numbers = {t.number for t in pareto_trials(self.study)}
        df = trials_frame(self.study)
        return df[df.trial.isin(numbers)].reset_index(drop=True)

    def select(self, rule=None) -> optuna.trial.FrozenTrial:
        """A trial of the Pareto front: `rule` is an objective name (its best value wins) or a function
        of a FrozenTrial giving a score to maximise. Without several objectives, the best trial."""
        if len(self.study.directions) == 1 and rule is None:
            return self.best_trial
        front = pareto_trials(self.study)
        if not front:
            raise ValueError(f"study {self.study.study_name!r} has no feasible complete trial")
        if rule is None:
            raise ValueError(f"several objectives: select by one of {', '.join(objective_names(self.study))} "
                             "or a function of the trial")
        if callable(rule):
            return max(front, key=rule)
        names = objective_names(self.study)
        if rule not in names:
            raise ValueError(f"select: {rule!r} is not an objective ({', '.join(names)})")
        i = names.index(rule)
        sign = 1 if self.study.directions[i] == optuna.study.StudyDirection.MAXIMIZE else -1
        return max(front, key=lambda t: sign * t.values[i])

    @property
    def best_params(self) -> dict:
        t = self.best_trial
        return dict(t.user_attrs.get("params", t.params))

    @property
    def trials(self) -> pd.DataFrame:
        return trials_frame(self.study)

    def leaderboard(self, k: int | None = 10) -> pd.DataFrame:
        return leaderboard(self.study, k)

    def best_model_path(self, dst: str | Path | None = None, select=None) -> Path:
        """Download the best (or `select`ed) trial's `.keras` file from MLflow."""
        from mlflow.tracking import MlflowClient

        t = self.select(select)
        artifact = t.user_attrs.get("model_artifact")
        if not artifact:
            raise FileNotFoundError(f"trial {t.number} has no saved model")
        dst = Path(dst or tempfile.mkdtemp(prefix="automl-model-"))
        client = MlflowClient(tracking_uri=self.tracking_uri)
        return Path(client.download_artifacts(t.user_attrs["mlflow_run_id"], artifact, str(dst)))

    def best_model(self, select=None):
        """The best trial's trained model (with several objectives: the `select`ed Pareto member),
        loaded with Keras `safe_mode`."""
        import keras

        return keras.saving.load_model(self.best_model_path(select=select), safe_mode=True)

    def export(self, out_dir: str | Path, **options):
        """Export the best trial (or `trial=N`, `trial="pareto"`) to `.keras`, SavedModel and TFLite,
        measure every file and log it to MLflow; see `automl.export.export_result` for the options."""
        from .export import export_result

        return export_result(self, out_dir, **options)

    def __repr__(self):
        return f"SearchResult(study={self.study.study_name!r}, trials={len(self.study.trials)})"


def load_result(study_name: str, storage: str | None = None, tracking_uri: str | None = None) -> SearchResult:
    from .stores import default_tracking_uri, open_storage
    from .tracking import PARENT_RUN_ATTR

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    return SearchResult(study, tracking_uri or study.user_attrs.get("tracking_uri") or default_tracking_uri(),
                        study.user_attrs.get(PARENT_RUN_ATTR), study.user_attrs.get("objective", "value"))
