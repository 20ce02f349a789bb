"""Every key automl writes on Optuna trials/studies and on MLflow runs, and the typed settings it keeps.

Why one module: the same strings are written by the trial runners and read by results, export,
plots and reaping; a typo in one place would silently read nothing. The search's settings are
stored once, as JSON on the Optuna study (`SearchSettings`), and read back from there by export,
distillation and results -- never parsed back from MLflow's string parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------- Optuna trial user attributes
PARAMS = "params"  # the sampled configuration, flat names (hypermodels: what they asked for)
MLFLOW_RUN_ID = "mlflow_run_id"  # the trial's nested MLflow run
MODEL_ARTIFACT = "model_artifact"  # artifact path of the trial's saved model (top `keep_top` so far only)
VAL_PREDICTIONS = "val_predictions"  # artifact path of its validation predictions (kept for ensembling)
PARAM_COUNT = "param_count"
EPOCHS_RUN = "epochs_run"
EPOCH_SECONDS = "epoch_seconds"  # wall seconds of each epoch (the first carries tracing): the schedule's estimates
BEST_EPOCHS = (
    "best_epochs"  # epochs up to and including the best one (what early stopping kept; refit trains this long)
)
FAIL_REASON = "fail_reason"
OBJECTIVES = "objectives"  # {name: value} of every objective and constrained quantity
CONSTRAINTS = "constraints"  # constraint slack values, Optuna's convention (<= 0 feasible)
VAL_METRICS = "val_metrics"  # {val_*: value} at the trial's best epoch: accuracy beside a val_loss objective
TIEBREAK = "tiebreak_val_loss"  # val_loss at the trial's best epoch: orders trials with equal values
OWNER = "owner"  # host, pid and start time of the process that runs the trial
RETRY_OF = "retry_of"  # a dead trial's configuration enqueued again
COPIED_FROM = "copied_from"  # trials copied in from another study (continue_from)
WARM_START_FROM = "warm_start_from"  # enqueued from another study's top-k
WARM_STARTED_FROM = "warm_started_from"  # kt-hyperband: the trial whose weights this one starts from
KERAS_TUNER_TRIAL = "keras_tuner_trial"
# budget schedule: epochs trained / the search's epochs (absent: 1.0, full); 1.0 also for a short
# trial that early stopping ended on its fitted start (SETTLED_EARLY): a full-length run ends the same
FIDELITY = "fidelity"
TRIAL_EPOCHS = "trial_epochs"  # budget schedule: the most epochs this trial trains
CONTINUED_FROM = "continued_from"  # budget schedule: the low-fidelity trial whose saved weights this one continues
# budget schedule: a continuation that trains fewer than the remaining epochs (as many as the time left holds)
CONTINUE_EPOCHS = "continue_epochs"
# budget schedule: time.time() by which this low-fidelity trial must end; it is pruned after an
# epoch when another (as long as the last) would end later, so the time left still continues the best candidate
EXPLORE_DEADLINE = "explore_deadline"
EPOCH_OFFSET = "epoch_offset"  # a continuation: epochs its weights had trained before it (its source's best epochs)
# a continuation none of whose epochs beat the weights it loaded: those are restored, their figures stand
KEPT_SAVED_WEIGHTS = "kept_saved_weights"
# a new trial none of whose epochs beat the fitted scores its model starts from (trees, fitted linear model)
KEPT_FITTED_START = "kept_fitted_start"
# budget schedule: a short trial that kept its fitted start through `patience` epochs, which ended it
# as they would a full-length run: it stands for a full-fidelity trial (fidelity 1.0, not continued)
SETTLED_EARLY = "settled_early"
WORKER = "automl.worker"  # host:pid of the process that trained the trial
DIAGNOSIS = "diagnosis"  # diagnostics.diagnose: healthy, diverged, overfitting from epoch k, ...
PRETRAIN_RUN = "pretrain_run"  # pretraining: the MLflow run id of the pretrained weights the trial started from
SPARSITY = "sparsity"  # compression: the measured share of zeros in the prunable weights
UNCOMPRESSED = "uncompressed_value"  # compression: the objective at the best epoch, before pruning/QAT

# ---------------------------------------------------------------- Optuna study user attributes
SETTINGS = "settings"  # SearchSettings as JSON
PARENT_RUN = "mlflow_parent_run_id"
TRACKING_URI = "tracking_uri"
SPACE_FINGERPRINT = "space_fingerprint"
DATA_FINGERPRINT = "data_fingerprint"
DATA_SCHEMA = "data_schema"  # Dataset.schema(): what reading new samples needs (`automl predict`)
OBJECTIVE = "objective"  # the primary objective's name
OBJECTIVE_NAMES = "objectives"  # every objective's name, in order
STUDY_CONSTRAINTS = "constraints"  # {name: upper bound}
ENSEMBLE = "ensemble"  # automl.ensemble.EnsembleChoice as JSON: members, weights, losses, MLflow run

# ---------------------------------------------------------------- MLflow tags
TAG_ROLE = "automl.role"  # search | trial | pretrain | ensemble
TAG_STUDY = "automl.study"
TAG_TRIAL_NUMBER = "automl.trial_number"
TAG_STATE = "automl.state"  # RUNNING, COMPLETE, PRUNED, FAIL, KILLED
TAG_FAIL_REASON = "automl.fail_reason"
TAG_PRUNED_AT = "automl.pruned_at_epoch"
TAG_STOPPED_BY = "automl.stopped_by"  # timeout | max_epochs_total | schedule (pruned to keep time for the best)
TAG_FEASIBLE = "automl.feasible"
TAG_FIDELITY = "automl.fidelity"  # budget schedule: epochs trained / the search's epochs
TAG_KEPT_SAVED_WEIGHTS = "automl.kept_saved_weights"  # see KEPT_SAVED_WEIGHTS
TAG_KEPT_FITTED_START = "automl.kept_fitted_start"  # see KEPT_FITTED_START
TAG_WORKER = "automl.worker"  # host:pid of the process that trained the trial
TAG_DIAGNOSIS = "automl.diagnosis"
TAG_PRETRAIN_RUN = "automl.pretrain_run"  # the MLflow run id of the pretraining a trial started from
TAG_PRETRAIN_KEY = "automl.pretrain_key"  # a pretraining run's key: what makes two pretrainings the same
TAG_COMPRESSION = "automl.compression"  # e.g. "pruned 0.80 + qat": what the trial's model went through
TAG_TRIAL = "automl.trial"  # model registry versions: the exported trial
TAG_RECOMMENDED = "automl.recommended"
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
TAG_PARENT_RUN = "mlflow.parentRunId"


@dataclass
class SearchSettings:
    """How a search trained its trials: what export, distillation and retraining need to do the same."""

    space: str | None = None  # path of the space file, or a shipped name
    space_name: str | None = None
    data: str | None = None  # data set name (a built-in set can be loaded again from it)
    train_samples: int | None = None
    val_samples: int | None = None
    objective: str | None = None
    direction: str | None = None
    seed: int | None = None
    epochs: int = 10
    patience: int | None = 3

    @property
    def validation_split(self) -> float:
        """The share held out for validation, as the data was split (0.2 when unknown)."""
        if self.train_samples and self.val_samples:
            return self.val_samples / (self.train_samples + self.val_samples)
        return 0.2

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SearchSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    @classmethod
    def of(cls, study) -> SearchSettings:
        """The settings recorded on an Optuna study (defaults for a study that recorded none)."""
        return cls.from_json(study.user_attrs.get(SETTINGS))


@dataclass
class TrialSettings:
    """How each trial of a running search trains (the runner's, not the space's, settings)."""

    objective: str
    direction: str  # maximize | minimize
    epochs: int = 10
    patience: int | None = 3  # early stopping on the objective; None turns it off
    seed: int | None = None
    deadline: float | None = None  # time.time() at which training stops, mid-epoch (that epoch is validated)
    explore_deadline: float | None = None  # this trial only: pruned when its next epoch would end past it (schedule)
    verbose: int = 0
    objectives: Any = None  # automl.objectives.Objectives when there are several, or constraints
    epochs_left: int | None = None  # what remains of the search's max_epochs_total
    keep_top: int = 1  # a trial among the best `keep_top` so far keeps its model (and, if > 1, val predictions)
    diagnostics: bool = True  # gradients, weights and activations per epoch, and a diagnosis (diagnostics.py)

    pruning: bool = True  # False for a trial whose epochs the pruner cannot compare (a continuation)
    from_saved_weights: bool = False  # a continuation: an epoch must beat the loaded weights (BestEpochStopping)

    @property
    def first_deadline(self) -> float | None:
        """The earlier of the search's deadline and this trial's explore deadline (what a
        pretraining, which has no epochs of the trial to stop after, must end by)."""
        return min((d for d in (self.deadline, self.explore_deadline) if d is not None), default=None)

    @property
    def prune(self) -> bool:  # Optuna cannot prune multi-objective trials
        return self.pruning and not (self.objectives is not None and self.objectives.multi)
