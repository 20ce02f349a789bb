"""Reading a search back: leaderboard, best parameters, best model. No TensorFlow import here
except in `best_model()`, so `automl trials` stays fast."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pandas as pd

from . import records, tracking
from .ranking import feasible, leaderboard_trials, objective_names, pareto_trials

if TYPE_CHECKING:
    from .ensemble import EnsembleChoice


HEADLINE = ("val_accuracy", "val_mae")  # shown beside any objective: how good, in the user's terms and units


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective value(s), validation accuracy (or MAE) at the best epoch
    when the objective is another, epochs, fidelity (budget schedule: short
    trials rank after full ones, so a column explains the order), seconds, parameters, failure reason."""
    rows = []
    names = objective_names(study)
    for t in study.get_trials(deepcopy=False):
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        values = dict(zip(names, t.values)) if t.values and len(names) > 1 else {}
        measured = {k: v for k, v in t.user_attrs.get(records.OBJECTIVES, {}).items() if k not in values}
        attrs = t.user_attrs
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.values[0] if t.values else None,
                **values,
                **measured,
                **{k: v for k, v in attrs.get(records.VAL_METRICS, {}).items() if k in HEADLINE and k not in names},
                **({"feasible": feasible(t)} if records.CONSTRAINTS in attrs else {}),
                "epochs": attrs.get(records.EPOCHS_RUN),
                **({"fidelity": attrs[records.FIDELITY]} if records.FIDELITY in attrs else {}),  # budget schedule
                "params_count": attrs.get(records.PARAM_COUNT),
                "seconds": seconds,
                **attrs.get(records.PARAMS, t.params),
                "fail_reason": attrs.get(records.FAIL_REASON),
                "diagnosis": attrs.get(records.DIAGNOSIS),
            }
        )
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

    def __init__(self, study: optuna.Study, tracking_uri: str, mlflow_run_id: str | None, objective: str, dataset=None):
        self.study, self.tracking_uri, self.mlflow_run_id = study, tracking_uri, mlflow_run_id
        self.objective, self.dataset = objective, dataset
        self.ensemble_choice: EnsembleChoice | None = None  # set by ensemble()

    @property
    def best_trial(self) -> optuna.trial.FrozenTrial:
        """The best feasible complete trial; with several objectives, choose with `select(...)`."""
        if len(self.study.directions) > 1:
            raise ValueError(
                f"this search has several objectives ({', '.join(objective_names(self.study))}): "
                "pick a trial of result.pareto_front() with result.select('<objective>') "
                "or best_model(select=...)"
            )
        top = leaderboard_trials(self.study)
        if not top:
            raise ValueError(f"study {self.study.study_name!r} has no feasible complete trial")
        return top[0]

    @property
    def best_value(self) -> float:
        value = self.best_trial.value
        assert value is not None  # a complete single-objective trial has its value
        return value

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
            raise ValueError(
                f"several objectives: select by one of {', '.join(objective_names(self.study))} "
                "or a function of the trial"
            )
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
        return dict(t.user_attrs.get(records.PARAMS, t.params))

    @property
    def trials(self) -> pd.DataFrame:
        return trials_frame(self.study)

    def leaderboard(self, k: int | None = 10) -> pd.DataFrame:
        return leaderboard(self.study, k)

    def best_model_path(self, dst: str | Path | None = None, select=None) -> Path:
        """Download the best (or `select`ed) trial's `.keras` file from MLflow into `dst` (default: a
        new temporary folder, which the caller owns and removes)."""
        return self._model_path(self.select(select), dst)

    def best_model(self, select=None):
        """The best trial's trained model (with several objectives: the `select`ed Pareto member),
        loaded with Keras `safe_mode`."""
        return self._load_model(self.select(select))

    def trial_model(self, number: int):
        """Trial `number`'s trained model (a complete trial whose model the search kept), loaded with
        Keras `safe_mode`: to compare or use a trial other than the best."""
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        if number not in trials:
            raise KeyError(
                f"study {self.study.study_name!r} has no trial {number} (trials 0-{max(trials, default=-1)})"
            )
        t = trials[number]
        if t.state != optuna.trial.TrialState.COMPLETE:
            raise ValueError(f"trial {number} is {t.state.name}, not COMPLETE: it has no trained model")
        return self._load_model(t)

    def _model_path(self, t: optuna.trial.FrozenTrial, dst: str | Path | None) -> Path:
        artifact = t.user_attrs.get(records.MODEL_ARTIFACT)
        if not artifact:
            raise FileNotFoundError(
                f"trial {t.number} has no saved model (the search keeps the top trials' models); "
                f"automl export --trial {t.number} --data ... retrains it"
            )
        dst = Path(dst or tempfile.mkdtemp(prefix="automl-model-"))
        return Path(tracking.download_artifact(self.tracking_uri, t.user_attrs[records.MLFLOW_RUN_ID], artifact, dst))

    def _load_model(self, t: optuna.trial.FrozenTrial):
        from .saved import load_model

        with tempfile.TemporaryDirectory(prefix="automl-model-") as tmp:  # loaded into memory, then gone
            return load_model(self._model_path(t, tmp))

    def ensemble(self, data=None, size: int = 20):
        """One Keras model: the weighted mean of the top trials' outputs, weights chosen greedily on
        the validation split (automl.ensemble); the best trial alone when mixing does not lower the
        validation loss. Built once and logged as its own MLflow run; `ensemble_choice` says which
        trials with which weights. `data`: the search's Dataset (default: the one it was fitted on)."""
        from .ensemble import build, load

        loaded = load(self)
        if loaded is None:
            from .export.trials import search_data

            loaded = build(self, search_data(self, data), size)
        model, self.ensemble_choice = loaded
        return model

    def export(self, out_dir: str | Path, **options):
        """Export the best trial (or `trial=N`, `trial="pareto"`) to `.keras`, SavedModel and TFLite,
        measure every file and log it to MLflow; see `automl.export.export_result` for the options."""
        from .export import export_result

        return export_result(self, out_dir, **options)

    def __repr__(self):
        return f"SearchResult(study={self.study.study_name!r}, trials={len(self.study.trials)})"


def load_result(study_name: str, storage: str | None = None, tracking_uri: str | None = None) -> SearchResult:
    """A finished (or running) search read back from its Optuna storage; `KeyError` when the study is
    not there."""
    from .stores import default_tracking_uri, open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    attrs = study.user_attrs
    return SearchResult(
        study,
        tracking_uri or attrs.get(records.TRACKING_URI) or default_tracking_uri(),
        attrs.get(records.PARENT_RUN),
        attrs.get(records.OBJECTIVE, "value"),
    )
