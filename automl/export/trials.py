"""Exporting a search's trials: the best one, a chosen one, every member of the accuracy/size Pareto
front, or the one whose full-integer int8 file scores best; logged to the search's MLflow run and
registered in the Model Registry. A trial without a stored model is rebuilt and retrained with the
search's recorded settings."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import records, tracking
from ..errors import ExportError
from ..ranking import feasible, weight_pareto
from ..records import SearchSettings
from .convert import convert_tflite, export_saved_model, parse_formats, short_error, tflite_plan
from .evaluate import score
from .model import export_model
from .report import ROW_KEYS, ExportReport, fmt
from .runners import TFLiteRunner, rows

if TYPE_CHECKING:
    from ..space import SearchSpace

METRIC_KEYS = ("size_bytes", *ROW_KEYS)  # logged to MLflow per exported file, with the task metric


def export_result(
    result,
    out_dir: str | Path,
    *,
    trial: int | str | None = None,
    data=None,
    formats: str | Iterable[str] | None = None,
    representative_samples: int = 200,
    int8_io: bool = False,
    select_int8_top_k: int | None = None,
    distill: bool = False,
    student: Any = None,
    distill_epochs: int | None = None,
    space=None,
    register: bool = True,
    registered_name: str | None = None,
    batch_size: int = 32,
    eval_samples: int | None = None,
    latency_runs: int = 100,
    threads: int | None = 1,
    verbose: bool = True,
    ensemble: bool = False,
    compression: dict[str, Any] | None = None,
) -> ExportReport:
    """Export a search's best trial (or trial number `trial`, or `trial="pareto"`: every member of the
    accuracy/size Pareto front) with `export_model`, log it to the search's MLflow parent run
    under `export/` and register it in the MLflow Model Registry (name: the study's, or
    `registered_name`).

    `data` is the search's `Dataset` (default: the one the result was fitted on, or the built-in
    set the study records); its fingerprint must match the study's. `select_int8_top_k=k` ranks
    the k best trials by their full-integer int8 TFLite score on the held-out data and exports the
    winner. `distill=True` trains a smaller `student` (default: the smallest trial of the Pareto
    front; a trial number; a parameter dict for the search space; or a `keras.Model`) on the
    chosen model's soft targets and exports it to `out_dir/student`. A trial without a stored
    model is rebuilt from its parameters and retrained with the search's settings (needs the space:
    the recorded path, or `space`). `compression` ({"sparsity": 0.8, "qat": True, "epochs": 2}, the
    keys of a space's `compression:` section) adds the fine-tuned variants `pruned_float32`,
    `pruned_int8` and `qat_int8` to the report (CLI: --prune, --qat, --fine-tune-epochs).
    """
    formats = parse_formats(formats)
    if select_int8_top_k is not None and select_int8_top_k < 1:
        raise ExportError(f"select_int8_top_k must be at least 1, not {select_int8_top_k}")
    if select_int8_top_k and trial is not None:
        raise ExportError("give either a trial or int8 selection of the top trials, not both")
    data = search_data(result, data)
    source = TrialModels(result, data, space, verbose)
    common = {
        "data": data,
        "formats": formats,
        "representative_samples": representative_samples,
        "int8_io": int8_io,
        "batch_size": batch_size,
        "eval_samples": eval_samples,
        "latency_runs": latency_runs,
        "threads": threads,
        "verbose": verbose,
        "seed": source.seed,
    }
    out = Path(out_dir)
    study_name = result.study.study_name
    if trial == "pareto":
        members = pareto_front(result.study)
        reports = [_export_trial(source, t, out / f"trial-{t.number:03d}", common, compression) for t in members]
        summary = ExportReport(
            str(out),
            data.task,
            reports[0].metric,
            reports[0].eval_samples,
            batch_size,
            threads,
            meta={
                "title": f"{study_name}: Pareto front (objective vs weights)",
                "study": study_name,
                "members": ", ".join(str(t.number) for t in members),
            },
        )
        if register:
            for r in reports:
                r.meta["registered"] = _register(result, r, registered_name, f"export/trial-{r.meta['trial']:03d}")
                r.write()
        summary.extra["pareto"] = {str(r.meta["trial"]): r.to_dict() for r in reports}
        summary.write()
        _log_to_mlflow(result, out, {f"trial{r.meta['trial']}": r for r in reports})
        return summary

    selection = None
    if ensemble and (trial is not None or select_int8_top_k):
        raise ExportError("ensemble exports the ensemble of the top trials: give no trial or int8 selection with it")
    if ensemble:
        model = result.ensemble(data)
        choice = result.ensemble_choice
        chosen = _get_trial(result.study, choice.members[0])
        meta = {
            "title": f"{study_name} ensemble of trials {', '.join(map(str, choice.members))}",
            "study": study_name,
            "trial": chosen.number,
            "members": choice.members,
            "weights": choice.weights,
            "ensemble_val_loss": choice.val_loss,
            "best_single_val_loss": choice.best_val_loss,
            "model_source": "ensemble",
        }
        report = export_model(model, out, meta=meta, compression=compression, **common)
        source._cache[chosen.number] = model  # the teacher, if a student is distilled below
    elif select_int8_top_k:
        selection = select_by_int8(source, select_int8_top_k, representative_samples, int8_io, eval_samples)
        chosen = result.study.trials[selection["chosen"]]
    elif trial is None:
        try:
            chosen = result.best_trial  # feasible; refuses a multi-objective study with the reason
        except ValueError as exc:
            raise ExportError(
                f"{exc}; or export trial=N (CLI: --trial N) or every Pareto member (trial='pareto', CLI: --pareto)"
            ) from None
    else:
        chosen = _get_trial(result.study, int(trial))
    if not ensemble:
        report = _export_trial(source, chosen, out, common, compression)
    if selection:
        report.extra["selection"] = selection
    parts = {"": report}
    if distill or student is not None:
        from .distill import distill_student

        student_model, student_meta = distill_student(
            source, source.model(chosen), student, epochs=distill_epochs, exclude=chosen.number
        )
        parts["student"] = export_model(student_model, out / "student", meta=student_meta, **common)
        report.extra["student"] = parts["student"].to_dict()
    if register:
        report.meta["registered"] = _register(result, report, registered_name, "export")
    report.write()
    _log_to_mlflow(result, out, parts)
    return report


def _export_trial(source: TrialModels, t, out: Path, common: dict, compression: dict | None = None) -> ExportReport:
    model = source.model(t)
    study_name = source.result.study.study_name
    meta = {
        "title": f"{study_name} trial {t.number}",
        "study": study_name,
        "trial": t.number,
        "objective": source.result.objective,
        "value": t.values[0] if t.values else None,
        "model_source": source.origin.get(t.number, "stored"),
        "params": dict(t.user_attrs.get(records.PARAMS, t.params)),
    }
    from ..training import TRAINING_DEFAULTS

    params = meta["params"]
    training = {k: params[k] for k in TRAINING_DEFAULTS if k in params}  # the fine-tuning's batch size and rate
    return export_model(model, out, meta=meta, compression=compression, training=training, **common)


def _get_trial(study, number: int):
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise ExportError(f"study {study.study_name!r} has no trial {number} (trials 0-{max(trials, default=-1)})")
    t = trials[number]
    if t.state.name != "COMPLETE":
        raise ExportError(f"trial {number} is {t.state.name}, not COMPLETE: only completed trials can be exported")
    return t


def pareto_front(study) -> list:
    """Completed trials no other trial beats on both the objective and the weight count, smallest first.

    A multi-objective study's own front (`study.best_trials`) when it has several objectives."""
    front = weight_pareto(study)
    if not front:
        raise ExportError(f"study {study.study_name!r} has no completed trial with a weight count")
    return front


def search_data(result, data=None):
    """The search's data: given, kept on the result, or the built-in set the study records.

    Checked against the study's data fingerprint, so files are never scored on other data."""
    from ..data import BUILTIN, load_data

    data = data if data is not None else result.dataset
    if data is None:
        settings = SearchSettings.of(result.study)
        if settings.data not in BUILTIN:
            raise ExportError(
                f"exporting study {result.study.study_name!r} needs its data to evaluate and calibrate "
                f"the files: pass data=Dataset (CLI: --data ...); the study was run on "
                f"{settings.data!r}"
            )
        data = load_data(settings.data, validation_split=settings.validation_split, seed=settings.seed or 0)
    expected = result.study.user_attrs.get(records.DATA_FINGERPRINT)
    if expected and data.fingerprint() != expected:
        raise ExportError(
            f"data {data.name!r} is not the data study {result.study.study_name!r} was run on "
            f"(fingerprint {data.fingerprint()} != {expected}); use the same file, "
            f"--validation-split and --seed as the search"
        )
    return data


class TrialModels:
    """Trained models of a search's trials: downloaded from MLflow, or rebuilt and retrained."""

    def __init__(self, result, data, space=None, verbose: bool = True):
        self.result, self.data, self.verbose = result, data, verbose
        self.settings = SearchSettings.of(result.study)
        self.seed = self.settings.seed or 0
        self._space: SearchSpace | None = None
        self._space_arg = space
        self.origin: dict[int, str] = {}
        self._cache: dict[int, Any] = {}

    @property
    def space(self) -> SearchSpace:
        from ..space import load_space

        if self._space is None:
            spec = self._space_arg or self.settings.space
            if spec is None:
                raise ExportError("the search's space is not recorded: pass space=PATH (CLI: --space)")
            try:
                space = load_space(spec)
            except Exception as exc:
                raise ExportError(
                    f"cannot load the search's space {spec!r} to rebuild a trial: {exc}; pass space=PATH (CLI: --space)"
                ) from None
            expected = self.result.study.user_attrs.get(records.SPACE_FINGERPRINT)
            if expected and expected not in (space.fingerprint(), _pretraining_fingerprint(space)):
                raise ExportError(
                    f"space {spec!r} has changed since study {self.result.study.study_name!r} ran "
                    f"(fingerprint {space.fingerprint()} != {expected}); pass the original as space=PATH"
                )
            self._space = space
        return self._space

    def model(self, t):
        """The trial's trained model: its stored `.keras` artifact, else retrained from its parameters."""
        from ..saved import load_model

        if t.number in self._cache:
            return self._cache[t.number]
        artifact, run_id = t.user_attrs.get(records.MODEL_ARTIFACT), t.user_attrs.get(records.MLFLOW_RUN_ID)
        if artifact and run_id:
            with tempfile.TemporaryDirectory(prefix="automl-model-") as dst:  # loaded into memory, then gone
                path = tracking.download_artifact(self.result.tracking_uri, run_id, artifact, dst)
                model = load_model(path)
            self.origin[t.number] = "stored"
        else:
            model = self.retrain(t)
            self.origin[t.number] = "retrained"
        self._cache[t.number] = model
        return model

    def config(self, t):
        import optuna

        pretrained = any(name.startswith("pretrain.") for name in t.params)  # searched with unlabeled data
        return self.space.for_data(pretrained).sample(optuna.trial.FixedTrial(dict(t.params)))

    def retrain(self, t):
        """Only best-so-far trials keep a model; others are rebuilt and trained again the same way
        (same seed, epochs and early stopping), so the model matches the trial up to nondeterminism."""
        import keras

        from ..pretraining import rebuild_pretrained
        from ..records import TrialSettings
        from ..training import fit_model, training_settings

        try:
            config = self.config(t)
        except ExportError as exc:
            raise ExportError(
                f"trial {t.number} has no stored model (only trials that were best so far keep one) "
                f"and cannot be rebuilt: {exc}"
            ) from None
        if self.verbose:
            from rich.console import Console

            Console(stderr=True, highlight=False, emoji=False).print(
                f"trial {t.number} has no stored model: retraining it from its parameters"
            )
        s = self.settings
        keras.backend.clear_session()
        if s.seed is not None:
            keras.utils.set_random_seed(s.seed + t.number)
        settings = TrialSettings(
            objective=self.result.objective,
            direction=self.result.study.directions[0].name.lower(),
            epochs=s.epochs,
            patience=s.patience,
            seed=s.seed,
        )
        model = rebuild_pretrained(config, self.data, t, self.result.tracking_uri)
        fit_model(model, self.data, training_settings(config.training), settings, [])
        return model


def _pretraining_fingerprint(space) -> str | None:
    """The space's fingerprint as a search with unlabeled data recorded it (None: it cannot pretrain)."""
    try:
        return space.for_data(True).fingerprint()
    except ValueError:
        return None


def select_by_int8(
    source: TrialModels,
    k: int,
    representative_samples: int = 200,
    int8_io: bool = False,
    eval_samples: int | None = None,
) -> dict[str, Any]:
    """Rank the k best completed trials by their full-integer int8 TFLite score on held-out data
    (quantization can reorder close trials); returns the table and the chosen trial number."""
    import optuna

    study, data = source.result.study, source.data
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        raise ExportError(f"study {study.study_name!r} has no completed trial")
    done = [t for t in done if feasible(t)]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    top = sorted(done, key=lambda t: (-t.values[0] if maximize else t.values[0], t.number))[:k]
    rng = np.random.default_rng(source.seed)
    x_eval, y_eval = data.x_val, data.y_val
    if eval_samples and len(y_eval) > eval_samples:
        keep = np.sort(rng.choice(len(y_eval), eval_samples, replace=False))
        x_eval, y_eval = rows(x_eval, keep), y_eval[keep]
    n_train = len(data.y_train)
    rep = rows(data.x_train, rng.choice(n_train, min(representative_samples, n_train), replace=False))
    metric = "accuracy" if data.task == "classification" else "mae"
    candidates = []
    for t in top:
        model = source.model(t)
        row = {"trial": t.number, "value": t.values[0]}
        with tempfile.TemporaryDirectory(prefix="automl-select-") as tmp:
            saved = Path(tmp) / "saved_model"
            export_saved_model(model, saved)
            plan = tflite_plan(model, saved, Path(tmp), Path(tmp))
            prep = plan.prepare or (lambda x: x)
            for variant in ("float32", "int8"):
                try:
                    runner = TFLiteRunner(content=convert_tflite(plan.source, variant, prep(rep), int8_io=int8_io))
                    xs = prep(x_eval)
                    pred = np.concatenate([runner(rows(xs, slice(i, i + 256))) for i in range(0, len(y_eval), 256)])
                    row[variant] = score(data.task, y_eval, pred)[metric]
                except Exception as exc:
                    row[variant], row[f"{variant}_reason"] = None, short_error(exc)
        candidates.append(row)
        if source.verbose:
            from rich.console import Console

            Console(stderr=True, highlight=False, emoji=False).print(
                f"int8 selection: trial {t.number} value {t.values[0]:.4f} int8 {metric} {fmt(row['int8'])}"
            )
    ranked = [r for r in candidates if r["int8"] is not None]
    if not ranked:
        raise ExportError(
            f"none of the top {k} trials converts to full-integer int8: {candidates[0].get('int8_reason')}"
        )
    better = max if metric == "accuracy" else min
    best = better(r["int8"] for r in ranked)
    chosen = next(r for r in ranked if r["int8"] == best)  # ties: the better float trial
    return {"ranked_by": f"int8 TFLite {metric}", "candidates": candidates, "chosen": chosen["trial"]}


# ---------------------------------------------------------------- MLflow


def _log_to_mlflow(result, out: Path, reports: dict[str, ExportReport]):
    """Files, reports and figures onto the search's parent run (metrics `export.[part.]variant.key`)."""
    if not result.mlflow_run_id:
        return
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for part, rep in reports.items():
        prefix = f"export.{part}." if part else "export."
        for name, v in rep.variants.items():
            for key in (*METRIC_KEYS, rep.metric):
                if v.get(key) is not None:
                    metrics[f"{prefix}{name}.{key}"] = float(v[key])
            tags[f"automl.{prefix}{name}"] = v["status"] if v["status"] == "ok" else f"{v['status']}: {v['reason']}"
        if rep.recommended:
            tags[f"automl.{prefix}recommended"] = rep.variants[rep.recommended]["file"]
    tracking.log_to_run(result.tracking_uri, result.mlflow_run_id, metrics, tags, artifacts=(out, "export"))


def _register(result, report: ExportReport, name: str | None, artifact_path: str) -> dict[str, Any] | None:
    """A Model Registry version whose source is the exported folder on the parent run."""
    if not result.mlflow_run_id:
        return None
    tags = {
        records.TAG_STUDY: result.study.study_name,
        records.TAG_TRIAL: str(report.meta.get("trial")),
        records.TAG_RECOMMENDED: report.variants[report.recommended]["file"] if report.recommended else "none",
    }
    if report.recommended:
        tags[f"automl.{report.metric}"] = str(report.variants[report.recommended].get(report.metric))
    return tracking.register_model_version(
        result.tracking_uri,
        name or result.study.study_name,
        result.mlflow_run_id,
        artifact_path,
        tags,
        description=f"trial {report.meta.get('trial')} exported by automl",
    )
