"""Trials per hour with 1 and with 2 workers sharing one study (one TensorFlow thread each).

Each worker is a real `automl search` process pointed at the same journal storage and MLflow store,
as the README's "Scaling out" recipe says; throughput is counted from the first trial's start to the
last trial's end (TensorFlow's import is not a trial). Goal: 2 workers >= 1.7x the trials/hour of
one, on this 2-core machine.

With `--ray`, the same runs also go through Ray in the same invocation (`automl search --ray local
--workers N --cpus-per-trial 1`: N Ray actors on one local Ray instance), printed side by side with
the plain `--worker` processes. Goals: 2 Ray workers >= 1.7x one; a Ray worker's trials/hour within
5 % of a plain worker process's (the per-trial overhead of running on Ray).

    .venv/bin/python bench/scaling.py               # 40 trials per run, ~2 min
    .venv/bin/python bench/scaling.py --ray         # plain and Ray, ~5 min
    .venv/bin/python bench/scaling.py --storage postgresql://user:pw@host/db   # a real server
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import optuna
from header import print_header

from automl.stores import open_storage

SPACE = """name: scaling
input: image
architecture:
  blocks: {block: conv, filters: {type: int, low: 8, high: 16}, kernel_size: 3, pooling: max}
  pool: {block: global_pool, mode: avg}
  head: {block: dense, units: {type: int, low: 16, high: 32}}
training:
  learning_rate: {type: float, low: 0.001, high: 0.01, log: true}
  batch_size: 64
"""


def run(
    workers: int, trials: int, epochs: int, tmp: Path, storage: str | None, ray: bool = False, extra: tuple = ()
) -> float:
    study = f"scaling-{'ray-' if ray else ''}{workers}-{uuid.uuid4().hex[:6]}"
    storage = storage or str(tmp / "optuna.journal")
    space = tmp / "scaling.yaml"
    space.write_text(SPACE)
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        str(Path(sys.executable).parent / "automl"),
        "search",
        str(space),
        "--data",
        "digits",
        "--trials",
        str(trials),
        "--epochs",
        str(epochs),
        "--study",
        study,
        "--storage",
        storage,
        "--tracking-uri",
        f"sqlite:///{tmp / 'mlflow.db'}",
        "--pruner",
        "none",
        "--sampler",
        "random",
        "--seed",
        "0",
        "--quiet",
        *extra,
    ]
    commands = (
        [[*cmd, "--ray", "local", "--workers", str(workers), "--cpus-per-trial", "1"]]
        if ray
        else [[*cmd, "--worker", str(i)] for i in range(workers)]
    )
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker failed: {err[-2000:]}")
    done = [
        t
        for t in optuna.load_study(study_name=study, storage=open_storage(storage)).trials
        if t.state == optuna.trial.TrialState.COMPLETE
    ]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    per_hour = len(done) / span * 3600
    owners = len({t.user_attrs["owner"]["pid"] for t in done})
    print(
        f"{'Ray' if ray else 'plain'} {workers} worker(s): {len(done)} trials in {span:6.1f} s = "
        f"{per_hour:8.0f} trials/hour "
        f"({owners} process(es) ran trials)",
        flush=True,
    )
    return per_hour


BARE_LOOP = """
import os, sys, time
import keras
from sklearn.datasets import load_digits
x, y = load_digits(return_X_y=True)
x = (x.reshape(-1, 8, 8, 1) / 16).astype("float32")
def once():
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(12, 3, activation="relu"),
                          keras.layers.MaxPooling2D(), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(24, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(x[:1400], y[:1400], epochs=int(sys.argv[1]), batch_size=64, verbose=0)
once()
started = time.perf_counter()
for _ in range(6):
    once()
print((time.perf_counter() - started) / 6)
"""


def ceiling(epochs: int) -> float:
    """The machine's own limit: two bare Keras loops (no automl, one thread each) side by side vs one."""
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}

    def seconds(n: int) -> float:
        procs = [
            subprocess.Popen([sys.executable, "-c", BARE_LOOP, str(epochs)], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(n)
        ]
        return max(float(p.communicate()[0].split()[-1]) for p in procs)

    alone, paired = seconds(1), seconds(2)
    print(f"bare Keras loop: {alone:.2f} s per model alone, {paired:.2f} s with two side by side", flush=True)
    return 2 * alone / paired


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--storage", default=None, help="shared Optuna storage (default: a journal file)")
    ap.add_argument("--ray", action="store_true", help="also run the workers on a local Ray instance")
    ap.add_argument("--in-process", action="store_true", help="trials in each worker's own process (no child)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of every run (report mean, SE and each)")
    args = ap.parse_args()
    print_header()
    print(f"{args.trials} trials of {args.epochs} epochs on digits per run")
    modes = (False, True) if args.ray else (False,)
    speedups: dict[bool, list[float]] = {ray: [] for ray in modes}
    overheads: dict[int, list[float]] = {1: [], 2: []}
    ceilings = []
    for round_ in range(args.repeats):
        print(f"round {round_ + 1} of {args.repeats}")
        ceilings.append(ceiling(args.epochs))
        rates: dict[tuple[bool, int], float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for ray in modes:
                for workers in (1, 2):
                    extra = ("--in-process",) if args.in_process else ()
                    rates[ray, workers] = run(workers, args.trials, args.epochs, Path(tmp), args.storage, ray, extra)
        for ray in modes:
            speedups[ray].append(rates[ray, 2] / rates[ray, 1])
        if args.ray:
            for workers in (1, 2):  # > 0: Ray's trials/hour below the plain processes'
                overheads[workers].append(1 - rates[True, workers] / rates[False, workers])
    print(f"this machine's ceiling for 2 workers (bare Keras loops): {summary(ceilings, 'x')}")
    for ray in modes:
        verdict = "met" if statistics.mean(speedups[ray]) >= 1.7 else "NOT met"
        name = "Ray" if ray else "plain"
        print(f"{name}: speed-up with 2 workers {summary(speedups[ray], 'x')} (goal >= 1.7x): {verdict}")
    if args.ray:
        for workers in (1, 2):
            verdict = "met" if statistics.mean(overheads[workers]) <= 0.05 else "NOT met"
            shown = summary(overheads[workers], "%")
            print(f"Ray overhead per trial, {workers} worker(s): {shown} (goal <= 5 %): {verdict}")


def summary(values: list[float], unit: str) -> str:
    """Mean, standard error and every round, e.g. '1.52x +- 0.03 (1.49, 1.55)'."""
    scale = 100 if unit == "%" else 1
    shown = ", ".join(f"{v * scale:+.1f}" if unit == "%" else f"{v:.2f}" for v in values)
    mean = statistics.mean(values) * scale
    se = statistics.stdev(values) * scale / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return f"{mean:.2f}{unit} +- {se:.2f} ({shown})"


if __name__ == "__main__":
    main()
