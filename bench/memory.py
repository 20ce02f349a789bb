"""Resident memory over a long search: does it keep growing from trial to trial?

100 small trials (random conv nets, 2 epochs each) on digits. The search process's resident memory
is read after every trial and printed after every 10th. In the default mode (trials in a worker
process, replaced once it has grown by `--recycle-mb`) and with `--isolate` (a fresh process per
trial), the workers' resident memory is also sampled from a thread while they train (`--sample-s`);
a trial's worker is the pid in its `automl.worker` user attribute.

Goals (issue 16), default mode: the search process grows <= 50 MB from trial 10 to trial 100; each
worker's peak <= its memory after its first trial + the recycle limit + one trial's rise (the most
a worker's memory rose within one trial, above where it started that trial: the model, its
optimizer and step graph, the batches). KerasTuner users' top complaint is memory that grows until
the machine swaps.

    .venv/bin/python bench/memory.py                 # default mode, 100 trials, ~4 min idle
    .venv/bin/python bench/memory.py --in-process    # or --isolate
    .venv/bin/python bench/memory.py --compare       # default, --in-process and --isolate side by side, ~12 min
    .venv/bin/python bench/memory.py --compare-gc    # in-process: frozen-heap collection vs Keras' full one, ~5 min

Between trials automl collects garbage with a frozen heap (automl.trial.reclaim_memory); `--full-gc`
(in-process only) uses Keras' `clear_session(free_memory=True)` instead (a full collection per
trial, what automl did before), and `--compare-gc` runs both, one child process each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import psutil

import automl  # noqa: F401
from automl import Search, records
from automl.data import load_data
from automl.isolation import RECYCLE_MB
from automl.space import SearchSpace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from header import print_header

MODES = {"default": None, "in-process": False, "isolate": True}  # name -> Search(isolate=...)
MARK = "RESULT "
MB = 2**20


def space() -> SearchSpace:
    return SearchSpace.from_dict(
        {
            "name": "memory",
            "architecture": {
                "blocks": {
                    "repeat": {"type": "int", "low": 1, "high": 2},
                    "each": {
                        "block": "conv",
                        "filters": {"type": "int", "low": 8, "high": 32},
                        "kernel_size": 3,
                        "pooling": ["max", "avg"],
                    },
                },
                "pool": {"block": "global_pool", "mode": "avg"},
                "head": {"block": "dense", "units": {"type": "int", "low": 16, "high": 64}},
            },
            "training": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}, "batch_size": 128},
        }
    )


def rss_mb(pid: int) -> float | None:
    try:
        return psutil.Process(pid).memory_info().rss / MB
    except psutil.NoSuchProcess:
        return None


class DescendantSampler(threading.Thread):
    """Resident memory of every descendant process (the workers among them), every `interval` s."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval, self.samples = interval, []  # (time, pid, MB)
        self._done = threading.Event()

    def run(self):
        me = psutil.Process()
        while not self._done.wait(self.interval):
            now = time.time()
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.samples.append((now, child.pid, child.memory_info().rss / MB))

    def stop(self) -> list:
        self._done.set()
        self.join()
        return self.samples


def worker_pid(trial) -> int | None:
    worker = trial.user_attrs.get(records.WORKER)  # "host:pid"
    return int(worker.rsplit(":", 1)[1]) if worker else None


def run(mode: str, trials: int, epochs: int, recycle_mb: float, sample_s: float) -> dict:
    """One search in this process; memory after every trial, and the workers' memory while they train."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search_pid = psutil.Process().pid
    after = []  # per trial: {time, search MB, worker pid, worker MB after the trial (None: it has exited)}
    start = time.perf_counter()

    def record(study, trial):
        pid = worker_pid(trial)
        row = {"time": time.time(), "search": rss_mb(search_pid), "pid": pid, "worker": rss_mb(pid) if pid else None}
        after.append(row)
        if len(after) % 10 == 0:
            worker = (
                ""
                if mode == "in-process"
                else f", worker {pid}: " + (f"{row['worker']:7.1f} MB" if row["worker"] is not None else "exited")
            )
            print(
                f"after trial {len(after):>4}: search {row['search']:7.1f} MB{worker}  "
                f"({time.perf_counter() - start:6.1f} s)",
                flush=True,
            )

    sampler = DescendantSampler(sample_s) if mode != "in-process" else None
    data = load_data("digits", seed=0)
    started = time.time()
    if sampler:
        sampler.start()
    with tempfile.TemporaryDirectory() as tmp:
        Search(
            space(),
            study_name="memory",
            storage=str(Path(tmp) / "optuna.journal"),
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            sampler="random",
            pruner="none",
            seed=0,
            max_trials=trials,
            patience=None,
            verbose=False,
            on_trial=record,
            isolate=MODES[mode],
            recycle_mb=recycle_mb,
        ).fit(data=data, epochs=epochs)
    samples = sampler.stop() if sampler else []
    return {
        "mode": mode,
        "recycle_mb": recycle_mb,
        "seconds": time.perf_counter() - start,
        "search": [row["search"] for row in after],
        "worker_after": [row["worker"] for row in after],  # None: the worker had exited (replaced)
        "workers": workers(after, samples, started) if sampler else [],
    }


def workers(after: list[dict], samples: list, started: float) -> list[dict]:
    """Per worker: its trials, its memory after its first trial, its peak while training and the most
    its memory rose within one trial (above where it started the trial)."""
    out: dict[int, dict] = {}
    previous_end, previous_mb = started, {}  # the worker's memory after its previous trial
    for row in after:
        pid = row["pid"]
        if pid is None:  # failed before it reached a worker
            previous_end = row["time"]
            continue
        w = out.setdefault(pid, {"pid": pid, "trials": 0, "first": row["worker"], "peak": 0.0, "rise": None})
        w["trials"] += 1
        during = [mb for t, p, mb in samples if p == pid and previous_end <= t <= row["time"]]
        peak = max(during + ([row["worker"]] if row["worker"] is not None else []), default=None)
        if peak is not None:
            w["peak"] = max(w["peak"], peak)
            if pid in previous_mb:
                w["rise"] = max(w["rise"] or 0.0, peak - previous_mb[pid])
        if row["worker"] is not None:
            previous_mb[pid] = row["worker"]
        previous_end = row["time"]
    return list(out.values())


def growth(series: list[float]) -> tuple[int, float] | None:
    """(last trial, growth in MB from trial 10 to it), None with fewer than 20 trials."""
    n = min(len(series), 100)
    return (n, series[n - 1] - series[9]) if n >= 20 else None


def summary(r: dict) -> list[str]:
    lines = []
    g = growth(r["search"])
    if g:
        n, mb = g
        goal = f" (goal <= 50 MB): {'met' if mb <= 50 else 'NOT met'}" if n == 100 else ""
        lines.append(f"search process growth from trial 10 to {n}: {mb:+.1f} MB{goal}")
    ws = r["workers"]
    if not ws:
        return lines
    if r["mode"] == "isolate":
        peaks = [w["peak"] for w in ws if w["peak"]]
        lines.append(
            f"{len(ws)} workers (one per trial); peak resident memory median {statistics.median(peaks):.0f} "
            f"MB, largest {max(peaks):.0f} MB"
        )
        return lines
    rises = [w["rise"] for w in ws if w["rise"] is not None]
    one_trial = max(rises, default=0.0)
    lines.append(
        f"{len(ws)} worker(s), trials {', '.join(str(w['trials']) for w in ws)}; recycle limit {r['recycle_mb']:g} MB; "
        f"one trial's rise (largest seen) {one_trial:.0f} MB"
    )
    for w in ws:
        if w["first"] is None:  # replaced after its first trial: no baseline to compare with
            lines.append(f"  worker {w['pid']}: {w['trials']} trial(s), peak {w['peak']:.0f} MB")
            continue
        bound = w["first"] + r["recycle_mb"] + one_trial
        lines.append(
            f"  worker {w['pid']}: {w['trials']} trials, {w['first']:.0f} MB after its first, peak {w['peak']:.0f} MB "
            f"(+{w['peak'] - w['first']:.0f}); goal peak <= first + recycle limit + one trial = {bound:.0f} MB: "
            f"{'met' if w['peak'] <= bound else 'NOT met'}"
        )
    return lines


def run_child(mode: str, args, extra: list[str] = ()) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--trials", str(args.trials), "--epochs", str(args.epochs)]
    cmd += ["--recycle-mb", str(args.recycle_mb), "--sample-s", str(args.sample_s), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"{mode} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(line[len(MARK) :])


def compare_modes(args):
    """The three modes on the same trials, one fresh process each, side by side."""
    runs = {}
    for mode in MODES:
        runs[mode] = run_child(mode, args)
        print(f"{mode:10s} {runs[mode]['seconds']:7.1f} s for {len(runs[mode]['search'])} trials", flush=True)
    d = runs["default"]
    print("\n| after trial | default: search (MB) | default: worker (MB) | `--in-process` (MB) | `--isolate` (MB) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for i in range(9, len(d["search"]), 10):
        worker = d["worker_after"][i]
        cells = [f"{d['search'][i]:.1f}", "replaced" if worker is None else f"{worker:.0f}"]
        for other in (runs["in-process"]["search"], runs["isolate"]["search"]):
            cells.append(f"{other[i]:.1f}" if i < len(other) else "")
        print(f"| {i + 1} | {' | '.join(cells)} |")
    for mode, r in runs.items():
        print(f"\n{mode}:")
        print("\n".join(summary(r)))


def compare_gc(args):
    """Both clean-ups on the same trials (in-process, where the clean-up runs), one fresh process each."""
    rows = {}
    for name, extra in (("frozen heap (automl)", []), ("full gc (clear_session)", ["--full-gc"])):
        r = rows[name] = run_child("in-process", args, extra)
        g = growth(r["search"])
        print(
            f"{name:26s} {r['seconds']:7.1f} s for {len(r['search'])} trials"
            + (f", memory growth from trial 10 {g[1]:+7.1f} MB" if g else ""),
            flush=True,
        )
    frozen, full = (r["seconds"] for r in rows.values())
    saved = (full - frozen) / args.trials * 1000
    print(f"time ratio frozen/full: {frozen / full:.2f} ({saved:.0f} ms saved per trial)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=2)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--in-process", action="store_true", help="train every trial in the search process")
    where.add_argument("--isolate", action="store_true", help="train each trial in a fresh child process")
    where.add_argument("--compare", action="store_true", help="default, --in-process and --isolate side by side")
    where.add_argument("--compare-gc", action="store_true", help="in-process, with and without --full-gc")
    ap.add_argument("--recycle-mb", type=float, default=RECYCLE_MB, help="the default mode's worker recycling")
    ap.add_argument("--sample-s", type=float, default=0.1, help="seconds between samples of the workers' memory")
    ap.add_argument(
        "--full-gc",
        action="store_true",
        help="(with --in-process) clean up between trials with keras.backend.clear_session(free_memory=True)",
    )
    ap.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    mode = args.child or ("in-process" if args.in_process else "isolate" if args.isolate else "default")
    if args.full_gc and mode != "in-process":
        ap.error("--full-gc: only with --in-process (the clean-up it replaces runs in the search process)")
    if not args.child:
        print_header()
    if args.compare:
        return compare_modes(args)
    if args.compare_gc:
        return compare_gc(args)
    if args.full_gc:
        import keras

        import automl.trial

        automl.trial.reclaim_memory = lambda: keras.backend.clear_session(free_memory=True)
    print(f"mode {mode}: {args.trials} trials of {args.epochs} epochs on digits", flush=True)
    r = run(mode, args.trials, args.epochs, args.recycle_mb, args.sample_s)
    if args.child:
        print(MARK + json.dumps(r), flush=True)
        return
    print(f"{r['seconds']:.1f} s for {len(r['search'])} trials")
    print("\n".join(summary(r)))


if __name__ == "__main__":
    main()
