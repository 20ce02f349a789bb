"""Reading a search back: leaderboard, best parameters, best model. No TensorFlow import here
except in `best_model()`, so `automl trials` stays fast."""
from __future__ import annotations

import tempfile
from pathlib import Path

import optuna
import pandas as pd

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, epochs, seconds, parameters, failure reason."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value,
                     "epochs": t.user_attrs.get("epochs_run"), "params_count": t.user_attrs.get("param_count"),
                     "seconds": seconds, **t.user_attrs.get("params", t.params),
                     "fail_reason": t.user_attrs.get("fail_reason")})
    return pd.DataFrame(rows)


def leaderboard(study: optuna.Study, k: int | None = 10) -> pd.DataFrame:
    """Completed trials best first, then the others by trial number."""
    df = trials_frame(study)
    if df.empty:
        return df
    ascending = study.direction == optuna.study.StudyDirection.MINIMIZE
    done = df[df.state == "COMPLETE"].sort_values("value", ascending=ascending)
    rest = df[df.state != "COMPLETE"]
    out = pd.concat([done, rest]) if len(rest) else done
    return out.head(k) if k else out


class SearchResult:
    """What `Search.fit` returns; also rebuilt from a stored study by `load_result`."""

    def __init__(self, study: optuna.Study, tracking_uri: str, mlflow_run_id: str | None,
                 objective: str, dataset=None):
        self.study, self.tracking_uri, self.mlflow_run_id = study, tracking_uri, mlflow_run_id
        self.objective, self.dataset = objective, dataset

    @property
    def best_trial(self) -> optuna.trial.FrozenTrial:
        return self.study.best_trial

    @property
    def best_value(self) -> float:
        return self.study.best_value

    @property
    def best_params(self) -> dict:
        t = self.best_trial
        return dict(t.user_attrs.get("params", t.params))

    @property
    def trials(self) -> pd.DataFrame:
        return trials_frame(self.study)

    def leaderboard(self, k: int | None = 10) -> pd.DataFrame:
        return leaderboard(self.study, k)

    def best_model_path(self, dst: str | Path | None = None) -> Path:
        """Download the best trial's `.keras` file from MLflow."""
        from mlflow.tracking import MlflowClient

        t = self.best_trial
        artifact = t.user_attrs.get("model_artifact")
        if not artifact:
            raise FileNotFoundError(f"trial {t.number} has no saved model")
        dst = Path(dst or tempfile.mkdtemp(prefix="automl-model-"))
        client = MlflowClient(tracking_uri=self.tracking_uri)
        return Path(client.download_artifacts(t.user_attrs["mlflow_run_id"], artifact, str(dst)))

    def best_model(self):
        """The best trial's trained model, loaded with Keras `safe_mode`."""
        import keras

        return keras.saving.load_model(self.best_model_path(), safe_mode=True)

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
