"""Pretraining inside a search: a trial's model body pretrained on the search's unlabeled samples.

Why a cache: pretraining costs many epochs over all unlabeled samples, and what it produces depends
only on the architecture, the `pretrain:` keys that shape the weights (`PRETRAINING_KEYS`: not the
fine-tuning's learning rate, batch size or frozen share) and the seed. Trials that agree on those
share one pretraining: in this process from memory, across processes and workers from its MLflow run
(`pretrain-<key>`, its loss curve and the body's weights as an artifact), found by the key tag. Two
workers that miss each other's run at the same moment both pretrain: wasted time, never wrong weights.

The body is the model up to its `features` layer (builder.py: the layer-normalised features in
front of the task head); the projection head and the contrastive views live only in pretrain.py's
trainer, so a trained, saved or exported model never contains them.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from . import records, tracking
from .builder import FEATURES
from .errors import TrialFailed
from .pretrain import pretrain
from .space.pretrain import PRETRAINING_KEYS, pretrain_settings

if TYPE_CHECKING:
    from .data import Dataset
    from .records import TrialSettings
    from .tracking import Tracker

WEIGHTS_ARTIFACT = "pretrain/body.weights.npz"
KEEP_IN_MEMORY = 4  # pretrained bodies kept in this process (most recent first); older ones reload from MLflow


def pretraining_key(architecture: dict[str, Any], pretrain_config: dict | None, data: str, seed: int) -> str:
    """What makes two pretrainings produce the same weights (`data`: the Dataset's fingerprint)."""
    settings = pretrain_settings(pretrain_config)
    what = {
        "architecture": architecture,
        "pretrain": {k: settings[k] for k in PRETRAINING_KEYS},
        "data": data,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def body_of(model: keras.Model) -> keras.Model:
    """The model without its task head: inputs -> the features the head reads (sharing the layers)."""
    return keras.Model(model.inputs, model.get_layer(FEATURES).input)


def freeze(body: keras.Model, share: float) -> int:
    """Keep the first `share` of the body's trainable layers (input side) fixed; returns how many."""
    layers = [layer for layer in body.layers if layer.trainable_weights]
    frozen = round(share * len(layers))
    for layer in layers[:frozen]:
        layer.trainable = False
    return frozen


def view_flip(architecture: dict[str, Any]) -> str:
    """The space's own mirror setting (an `augment` stage's `flip`): digits must not be mirrored, photos may."""
    for stage in architecture.values():
        for cfg in stage if isinstance(stage, list) else [stage]:
            if isinstance(cfg, dict) and cfg.get("block") == "augment":
                return str(cfg.get("flip", "none"))
    return "none"


def pretrained_weights(tracking_uri: str, run_id: str) -> list[np.ndarray]:
    """The body weights a pretraining run saved."""
    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.download_artifact(tracking_uri, run_id, WEIGHTS_ARTIFACT, tmp)
        with np.load(path) as f:
            return [f[f"arr_{i}"] for i in range(len(f.files))]


def rebuild_pretrained(config, data: Dataset, trial, tracking_uri: str) -> keras.Model:
    """A trial's model built again (a refit, a retrain for export) from the pretrained weights it
    started from, with the same layers frozen; a trial that did not pretrain: a fresh model."""
    from .builder import build_model

    run_id = trial.user_attrs.get(records.PRETRAIN_RUN)
    model = build_model(config.architecture, data, pretrained=run_id is not None)
    if run_id is not None:
        body = body_of(model)
        body.set_weights(pretrained_weights(tracking_uri, run_id))
        freeze(body, pretrain_settings(config.pretrain)["frozen"])
    return model


class PretrainCache:
    """Pretrained bodies of one search, by `pretraining_key`."""

    def __init__(self, data: Dataset, tracker: Tracker):
        self.data, self.tracker = data, tracker
        self.memory: OrderedDict[str, tuple[list[np.ndarray], str]] = OrderedDict()
        self.durations: list[float] = []  # seconds of the pretrainings finished here
        self.fingerprint: str | None = None

    def apply(self, model: keras.Model, config, settings: TrialSettings) -> dict[str, Any]:
        """Load (or first make) the pretrained weights of `model`'s body and freeze its share; returns
        what the trial records: the pretraining run id and the seconds spent pretraining here."""
        if self.data.x_unlabeled is None:
            raise ValueError("the configuration asks for pretraining but the search has no unlabeled data")
        p = pretrain_settings(config.pretrain)
        seed = settings.seed or 0
        if self.fingerprint is None:  # hashing every sample once per search, not once per trial
            self.fingerprint = self.data.fingerprint()
        key = pretraining_key(config.architecture, config.pretrain, self.fingerprint, seed)
        body = body_of(model)
        started = time.perf_counter()
        weights, run_id = self._cached(key, body)
        if weights is None:
            self._check_time_left(settings)
            weights, run_id, complete = self._pretrain(body, key, p, config.architecture, settings, seed)
            if complete:
                self._remember(key, weights, run_id)
        else:
            body.set_weights(weights)
        frozen = freeze(body, p["frozen"])
        return {"run_id": run_id, "seconds": time.perf_counter() - started, "frozen_layers": frozen}

    def _check_time_left(self, settings: TrialSettings) -> None:
        """A new pretraining that cannot finish before the search's deadline, or a short trial's
        explore deadline under the budget schedule (the earlier ones of this search took longer than
        the time left), fails its trial at once: the time goes to other trials."""
        deadline = settings.first_deadline
        if deadline is None:
            return
        taken = self.durations or self.tracker.pretrain_seconds()
        left = deadline - time.time()
        if taken and left < statistics.mean(taken):
            raise TrialFailed(
                f"a new pretraining would not finish before the deadline (this search's took "
                f"{statistics.mean(taken):.0f} s on average, {left:.0f} s are left)"
            )

    def _cached(self, key: str, body: keras.Model) -> tuple[list[np.ndarray] | None, str]:
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        run_id = self.tracker.find_pretrain(key)
        if run_id is None:
            return None, ""
        weights = pretrained_weights(self.tracker.tracking_uri, run_id)
        if [w.shape for w in weights] != [tuple(v.shape) for v in body.weights]:
            return None, ""  # not this body after all: pretrain it
        self._remember(key, weights, run_id)
        return weights, run_id

    def _remember(self, key: str, weights: list[np.ndarray], run_id: str) -> None:
        self.memory[key] = (weights, run_id)
        self.memory.move_to_end(key)
        while len(self.memory) > KEEP_IN_MEMORY:
            self.memory.popitem(last=False)

    def _pretrain(self, body, key: str, p: dict, architecture: dict, settings: TrialSettings, seed: int):
        """Pretrain `body` in place, logged as its own run; stops at the search's deadline, or the
        trial's explore deadline (then the weights serve this trial but are not shared: they are not
        what the key promises)."""
        run = self.tracker.start_pretrain(key, {f"pretrain.{k}": v for k, v in p.items() if k in PRETRAINING_KEYS})
        unlabeled = np.concatenate([self.data.x_unlabeled, self.data.x_train])  # labels unused: all samples teach
        monitor = _PretrainMonitor(run, settings.first_deadline)
        state = "FAIL"
        try:
            losses = pretrain(
                body,
                unlabeled,
                self.data.kind,
                epochs=p["epochs"],
                temperature=p["temperature"],
                projection=p["projection"],
                batch_size=p["batch_size"],
                learning_rate=p["learning_rate"],
                seed=seed,
                flip=view_flip(architecture),
                callbacks=[monitor],
            )
            if not losses or not np.isfinite(losses[-1]):
                raise ValueError(f"pretraining loss is {losses[-1] if losses else 'missing'}")
            weights = body.get_weights()
            complete = not monitor.stopped
            if complete:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / Path(WEIGHTS_ARTIFACT).name
                    np.savez(path, *weights)
                    run.log_artifact(path, str(Path(WEIGHTS_ARTIFACT).parent))
            state = "COMPLETE" if complete else "KILLED"
            if complete:
                self.durations.append(time.perf_counter() - monitor.started)
            return weights, run.run_id, complete
        finally:
            metrics = {"pretrain_seconds": time.perf_counter() - monitor.started, "unlabeled_samples": len(unlabeled)}
            run.finish(state, metrics, {records.TAG_STOPPED_BY: "timeout"} if monitor.stopped else {})


class _PretrainMonitor(keras.callbacks.Callback):
    """The pretraining's loss per epoch on its run; stops at the search's deadline."""

    def __init__(self, run, deadline: float | None):
        super().__init__()
        self.run, self.deadline = run, deadline
        self.started = time.perf_counter()
        self.stopped = False

    def on_epoch_end(self, epoch, logs=None):
        self.run.log_epoch(epoch, {"pretrain_loss": float((logs or {}).get("loss", float("nan")))})
        if self.deadline is not None and time.time() >= self.deadline:
            self.stopped = True
            self.model.stop_training = True
