"""Ensembles of a search's best trials: greedy ensemble selection with replacement (Caruana et al.
2004, "Ensemble selection from libraries of models") over the kept validation predictions, turned
into one Keras model that takes the raw inputs and outputs the members' weighted mean.

Why: the trials of a search are a library of different, already trained models; averaging a few of
them lowers the validation loss more often than another trial would (AutoGluon and H2O ship this;
no Keras AutoML tool does). The weights are chosen on the validation split only, by the loss the
models were trained on (cross-entropy, or squared error for regression), so the test split stays
untouched. Nothing helps -> one member: the best trial.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from . import records, tracking
from .errors import SearchError
from .ranking import leaderboard_trials

KEEP_TOP = 20  # trials whose validation predictions (and model) are kept for ensembling: no more
ENSEMBLE_ARTIFACT = "model/model.keras"
EPSILON = 1e-7


def validation_loss(predictions: np.ndarray, y: np.ndarray, task: str, target_std: float = 1.0) -> float:
    """Mean cross-entropy of class probabilities (integer labels), or mean squared error over the
    training target's variance (`target_std` squared), as the trials' loss (training.standardized_mse)."""
    if task == "regression":
        return float(np.mean((predictions.reshape(len(y), -1)[:, 0] - y.reshape(-1)) ** 2)) / float(target_std) ** 2
    p = np.clip(predictions[np.arange(len(y)), y.astype(int).reshape(-1)], EPSILON, 1.0)
    return float(-np.mean(np.log(p)))


def select_weights(
    predictions: np.ndarray, y: np.ndarray, task: str, size: int = 20, target_std: float = 1.0
) -> tuple[np.ndarray, list[float]]:
    """Greedy forward selection with replacement: `size` rounds, each adds the member (ties: the
    lowest index, i.e. the better-ranked trial) whose inclusion gives the lowest validation loss of
    the running mean. Returns the weights (counts / rounds) of the round with the lowest loss, and
    the loss after every round.

    `predictions`: (members, samples, outputs) validation predictions, best-ranked member first."""
    if predictions.ndim != 3 or len(predictions) == 0:
        raise ValueError(f"predictions must be (members, samples, outputs), not shape {predictions.shape}")
    counts = np.zeros(len(predictions))
    best_counts, best_loss, losses = counts, np.inf, []
    running = np.zeros_like(predictions[0], dtype="float64")
    for step in range(size):
        candidates = (running * step + predictions) / (step + 1)
        scores = [validation_loss(c, y, task, target_std) for c in candidates]
        j = int(np.argmin(scores))
        counts = counts.copy()
        counts[j] += 1
        running = candidates[j]
        losses.append(scores[j])
        if scores[j] < best_loss - 1e-12:
            best_loss, best_counts = scores[j], counts
    return best_counts / best_counts.sum(), losses


@keras.saving.register_keras_serializable(package="automl")
class WeightedMean(layers.Layer):
    """sum_i w_i * x_i over a list of same-shaped tensors (the members' outputs)."""

    def __init__(self, weights, **kwargs):
        super().__init__(**kwargs)
        self.member_weights = [float(w) for w in weights]

    def call(self, outputs):
        return sum(w * out for w, out in zip(self.member_weights, outputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weights": self.member_weights}


def ensemble_model(members: list, weights) -> keras.Model:
    """One model: the raw inputs of the first member (the same for every trial of a search), each
    member applied to them, their outputs' weighted mean. One member -> that model itself."""
    if len(members) != len(weights):
        raise ValueError(f"{len(members)} members but {len(weights)} weights")
    if len(members) == 1:
        return members[0]
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name), members[0].input
    )
    outputs = []
    for i, member in enumerate(members):
        member.name = f"member_{i}"  # nested models need distinct names in the outer one
        outputs.append(member(inputs))
    return keras.Model(inputs, WeightedMean(weights, name="weighted_mean")(outputs), name="ensemble")


@dataclass
class EnsembleChoice:
    """Which trials, with which weights, and the validation losses that chose them."""

    members: list[int]  # trial numbers
    weights: list[float]
    val_loss: float  # the ensemble's
    best_val_loss: float  # the best trial's alone
    candidates: list[int] = field(default_factory=list)  # trials whose predictions were considered
    run_id: str | None = None  # its MLflow run, once logged

    @property
    def helps(self) -> bool:
        """Whether the choice beats the best trial alone on validation (a mix, or another single trial)."""
        return bool(self.val_loss < self.best_val_loss)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> EnsembleChoice:
        return cls(**json.loads(text))


def kept_predictions(result, top: int = KEEP_TOP) -> tuple[list, np.ndarray]:
    """The best-ranked complete trials that kept validation predictions (at most `top`), and those
    predictions stacked as (members, samples, outputs)."""
    trials = [t for t in leaderboard_trials(result.study) if t.user_attrs.get(records.VAL_PREDICTIONS)][:top]
    arrays = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in trials:
            path = tracking.download_artifact(
                result.tracking_uri, t.user_attrs[records.MLFLOW_RUN_ID], t.user_attrs[records.VAL_PREDICTIONS], tmp
            )
            arrays.append(np.load(path))
    return trials, np.stack(arrays) if arrays else np.zeros((0,))


def choose(result, y_val: np.ndarray, task: str, size: int = 20, target_std: float = 1.0) -> EnsembleChoice:
    """Select the ensemble from the kept predictions: the best trial alone unless the selection lowers
    the validation loss below the best trial's own. The selection may be one other trial alone: a
    budget schedule ranks low-fidelity trials apart from full ones, and one may be better."""
    best = result.best_trial
    trials, predictions = kept_predictions(result)
    if not trials:
        return EnsembleChoice([best.number], [1.0], np.nan, np.nan)
    numbers = [t.number for t in trials]
    if len(predictions[0]) != len(y_val):
        raise SearchError(
            f"the kept validation predictions hold {len(predictions[0])} samples, the data's validation "
            f"split {len(y_val)}: pass the search's own data"
        )
    return select(numbers, predictions, y_val, task, best.number, size, target_std)


def select(
    numbers: list[int],
    predictions: np.ndarray,
    y: np.ndarray,
    task: str,
    best: int,
    size: int = 20,
    target_std: float = 1.0,
):
    """The choice among trials `numbers` (their validation `predictions`, best-ranked first) against
    trial `best` alone: the greedy selection when its validation loss is lower, else `best`."""
    weights, _ = select_weights(predictions, y, task, size, target_std)
    mixed = validation_loss(np.tensordot(weights, predictions, axes=1), y, task, target_std)
    alone = validation_loss(predictions[numbers.index(best)], y, task, target_std) if best in numbers else np.inf
    chosen = [(n, float(w)) for n, w in zip(numbers, weights) if w > 0]
    if not mixed < alone:
        return EnsembleChoice([best], [1.0], alone, alone, list(numbers))
    return EnsembleChoice([n for n, _ in chosen], [w for _, w in chosen], mixed, alone, list(numbers))


def build(result, data, size: int = 20, log: bool = True) -> tuple[keras.Model, EnsembleChoice]:
    """Choose, build, and (with `log`) record the ensemble as its own MLflow run under the search's
    parent run (members, weights, losses, the `.keras` file) and on the study."""
    from .export.trials import TrialModels

    choice = choose(result, np.asarray(data.y_val), data.task, size, data.target_std)
    source = TrialModels(result, data, verbose=False)
    trials = {t.number: t for t in result.study.get_trials(deepcopy=False)}
    model = ensemble_model([source.model(trials[n]) for n in choice.members], choice.weights)
    if log and result.mlflow_run_id:
        choice.run_id = _log(result, model, choice)
        result.study.set_user_attr(records.ENSEMBLE, choice.to_json())
    return model, choice


def _log(result, model: keras.Model, choice: EnsembleChoice) -> str:
    params: dict[str, Any] = {
        "members": ",".join(map(str, choice.members)),
        "weights": ",".join(f"{w:.4f}" for w in choice.weights),
        "candidates": ",".join(map(str, choice.candidates)),
    }
    metrics = {"val_loss": choice.val_loss, "best_single_val_loss": choice.best_val_loss, "size": len(choice.members)}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model").mkdir()
        model.save(Path(tmp) / ENSEMBLE_ARTIFACT)
        (Path(tmp) / "ensemble.json").write_text(choice.to_json())
        return tracking.log_child_run(
            result.tracking_uri,
            result.mlflow_run_id,
            f"{result.study.study_name}-ensemble",
            params,
            metrics,
            {records.TAG_ROLE: "ensemble", records.TAG_STUDY: result.study.study_name},
            tmp,
        )


def load(result) -> tuple[keras.Model, EnsembleChoice] | None:
    """The ensemble recorded on the study (model from its MLflow run), or None."""
    text = result.study.user_attrs.get(records.ENSEMBLE)
    if not text:
        return None
    choice = EnsembleChoice.from_json(text)
    current = [t.number for t in leaderboard_trials(result.study) if t.user_attrs.get(records.VAL_PREDICTIONS)]
    if choice.candidates != current[:KEEP_TOP] or not choice.run_id:
        return None  # trials were added since: choose again
    from .saved import load_model

    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.download_artifact(result.tracking_uri, choice.run_id, ENSEMBLE_ARTIFACT, tmp)
        return load_model(path), choice
