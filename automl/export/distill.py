"""Knowledge distillation: train a smaller student on a teacher's soft targets.

Classification: loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T), with
both softmax outputs softened at temperature T (log-probabilities / T, so the models need no logit
output). Regression: alpha * MSE(targets) + (1 - alpha) * MSE(teacher's predictions). The teacher's
outputs are computed once, then packed beside the labels, so training is a plain `model.fit`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import records
from ..errors import ExportError
from ..ranking import weight_pareto


def distillation_loss(classification: bool, temperature: float, alpha: float, target_std: float = 1.0):
    """The loss `distill` trains with (see the module docstring). `y_true` packs the label in
    column 0 and, for classification, the teacher's softened probabilities in columns 1 on (for
    regression, the teacher's prediction in column 1); `y_pred` is the student's softmax output
    (or its prediction, for regression). A regression's squared errors are over the training target's
    variance (`target_std` squared), as a search's trials train (training.standardized_mse)."""
    import keras
    from keras import ops

    t, scale = float(temperature), 1.0 / float(target_std) ** 2

    def loss(y_true, y_pred):
        if classification:
            hard = ops.cast(y_true[:, 0], "int32")
            soft = y_true[:, 1:]
            ce = keras.losses.sparse_categorical_crossentropy(hard, y_pred)
            log_student = ops.log_softmax(ops.log(ops.clip(y_pred, 1e-7, 1.0)) / t, axis=-1)
            kl = ops.sum(soft * (ops.log(ops.clip(soft, 1e-7, 1.0)) - log_student), axis=-1)
            return alpha * ce + (1 - alpha) * t * t * kl
        pred = ops.reshape(y_pred, (-1,))
        return scale * (alpha * ops.square(y_true[:, 0] - pred) + (1 - alpha) * ops.square(y_true[:, 1] - pred))

    return loss


def distill(
    teacher,
    student,
    data,
    *,
    temperature: float = 4.0,
    alpha: float = 0.1,
    epochs: int = 10,
    training: dict | None = None,
    patience: int | None = 3,
    verbose: int = 0,
):
    """Fit `student` (a fresh `keras.Model` with the teacher's input and output shapes) on `data`
    (an `automl.Dataset`) against the teacher's soft targets; returns it with its best weights
    (early stopping on validation accuracy, or validation loss for regression)."""
    import keras
    from keras import ops

    from ..training import loss_and_metrics, make_optimizer, training_settings

    if tuple(student.outputs[0].shape[1:]) != tuple(teacher.outputs[0].shape[1:]):
        raise ExportError(
            f"student output shape {tuple(student.outputs[0].shape[1:])} differs from the teacher's "
            f"{tuple(teacher.outputs[0].shape[1:])}"
        )
    if tuple(student.inputs[0].shape[1:]) != tuple(teacher.inputs[0].shape[1:]):
        raise ExportError(
            f"student input shape {tuple(student.inputs[0].shape[1:])} differs from the teacher's "
            f"{tuple(teacher.inputs[0].shape[1:])}"
        )
    if not (temperature > 0 and 0 <= alpha <= 1 and epochs >= 1):
        raise ExportError(
            f"distillation needs temperature > 0, 0 <= alpha <= 1, epochs >= 1 (got {temperature}, {alpha}, {epochs})"
        )
    settings = training_settings(training or {})
    classification = data.task == "classification"

    def targets(x, y):
        p = np.asarray(teacher.predict(x, batch_size=256, verbose=0), "float32")
        if classification:
            logits = np.log(np.clip(p, 1e-7, 1.0)) / temperature
            soft = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = soft / soft.sum(axis=1, keepdims=True)
        return np.concatenate([np.asarray(y, "float32").reshape(len(y), 1), p.reshape(len(y), -1)], axis=1)

    def hard_accuracy(y_true, y_pred):
        return ops.cast(ops.equal(ops.argmax(y_pred, axis=-1), ops.cast(y_true[:, 0], "int64")), "float32")

    def hard_mae(y_true, y_pred):
        return ops.abs(y_true[:, 0] - ops.reshape(y_pred, (-1,)))

    metric = hard_accuracy if classification else hard_mae
    batch = int(settings["batch_size"])
    steps = epochs * math.ceil(len(data.y_train) / batch)
    student.compile(
        optimizer=make_optimizer(settings, steps, student),
        loss=distillation_loss(classification, temperature, alpha, data.target_std),
        metrics=[metric],
    )
    callbacks = []
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=f"val_{metric.__name__}",
                mode="max" if classification else "min",
                patience=patience,
                restore_best_weights=True,
            )
        )
    history = student.fit(
        data.x_train,
        targets(data.x_train, data.y_train),
        validation_data=(data.x_val, targets(data.x_val, data.y_val)),
        epochs=epochs,
        batch_size=batch,
        callbacks=callbacks,
        verbose=verbose,
    )
    loss, metrics = loss_and_metrics(data.task)  # a plain compile config, so the saved file loads anywhere
    student.compile(optimizer=student.optimizer, loss=loss, metrics=metrics)
    student.distill_history = history.history  # read by distill_student for the report
    return student


def distill_student(
    source,
    teacher,
    student=None,
    *,
    epochs: int | None = None,
    exclude: int | None = None,
    temperature: float = 4.0,
    alpha: float = 0.1,
) -> tuple[Any, dict[str, Any]]:
    """Pick, build and distil a student for a search (`source`: export's `TrialModels`).

    `student`: None (the smallest Pareto trial with fewer weights than the teacher), a trial
    number (its architecture and training settings, fresh weights), a parameter dict for the
    search space, or a `keras.Model`. Returns (trained student, facts for the report)."""
    import keras
    import optuna

    from ..builder import build_model

    study, data = source.result.study, source.data
    facts: dict[str, Any] = {}
    training = None
    if isinstance(student, keras.Model):
        model, facts["student"] = student, "given model"
    else:
        if student is None:
            student_trial = _smallest_student(study, teacher.count_params(), exclude)
            config = source.config(student_trial)
            facts["student"] = f"architecture of trial {student_trial.number} (smallest on the Pareto front)"
        elif isinstance(student, (int, np.integer)):
            trials = {t.number: t for t in study.get_trials(deepcopy=False)}
            if int(student) not in trials:
                raise ExportError(f"study {study.study_name!r} has no trial {student} to use as the student")
            config = source.config(trials[int(student)])
            facts["student"] = f"architecture of trial {int(student)}"
        elif isinstance(student, dict):
            try:
                config = source.space.sample(optuna.trial.FixedTrial(dict(student)))
            except ValueError as exc:
                raise ExportError(f"student parameters do not fit the search space: {exc}") from None
            facts["student"] = "given parameters"
        else:
            raise ExportError(
                f"student must be a trial number, a parameter dict or a keras.Model, not {type(student).__name__}"
            )
        keras.utils.set_random_seed(source.seed)
        model, training = build_model(config.architecture, data), config.training
        facts["student_params"] = dict(config.params)
    epochs = epochs or source.settings.epochs
    patience = source.settings.patience
    if source.verbose:
        from rich.console import Console

        Console(stderr=True, highlight=False, emoji=False).print(
            f"distilling: student {facts['student']}, {model.count_params()} weights "
            f"(teacher {teacher.count_params()}), up to {epochs} epochs"
        )
    distill(
        teacher, model, data, temperature=temperature, alpha=alpha, epochs=epochs, training=training, patience=patience
    )
    facts.update(
        {
            "title": f"{study.study_name} student distilled from trial {exclude}",
            "study": study.study_name,
            "teacher_trial": exclude,
            "teacher_param_count": int(teacher.count_params()),
            "param_count": int(model.count_params()),
            "temperature": temperature,
            "alpha": alpha,
            "epochs_run": len(model.distill_history.get("loss", [])),
        }
    )
    return model, facts


def _smallest_student(study, teacher_weights: int, exclude: int | None):
    import optuna

    front = [
        t
        for t in weight_pareto(study)
        if t.number != exclude and (t.user_attrs.get(records.PARAM_COUNT) or 0) < teacher_weights
    ]
    if front:
        return front[0]
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.number != exclude and (t.user_attrs.get(records.PARAM_COUNT) or math.inf) < teacher_weights
    ]
    if not done:
        raise ExportError(
            f"no completed trial of study {study.study_name!r} is smaller than the teacher "
            f"({teacher_weights} weights): pass student=TRIAL or a parameter dict"
        )
    return min(done, key=lambda t: t.user_attrs[records.PARAM_COUNT])
