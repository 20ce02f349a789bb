"""Scale-out on a Ray cluster (`Search(ray=..., workers=N)`, `automl search --ray ... --workers N`).

Why Ray, and why so little here: users at cluster scale already run Ray (the cluster launcher,
KubeRay), and Ray already places processes on free CPUs/GPUs and restarts those whose node died.
We write no scheduler, queue or RPC: the driver creates the study and the MLflow parent run, then
starts N Ray actors, each running an ordinary automl worker (a copy of the driver's `Search` with
its own worker index) on that study. The Optuna storage stays the single source of truth: the
budget, surplus trials and dead trials (recovery.py) are settled there exactly as for `--worker`
processes started by hand. The data travels once through Ray's object store, so a file that
exists only on the driver's machine works.

Faults: an actor whose node dies is restarted by Ray (`max_restarts`) and its worker call is
retried, so it rejoins the study; the trial it was training is failed by the reaping every worker
and the driver do (a dead Ray node, a dead pid on this host, or a stopped heartbeat), with its
reason, and its MLflow run ends KILLED. Ctrl-C or SIGTERM on the driver kills every actor and
fails the trials they were running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ClusterError, NoCompleteTrial
from .isolation import WATCH_SECONDS
from .recovery import RAY_ACTOR_ENV, RAY_NODE_ENV, fail_trials_of, worker_id

INSTALL = "pip install 'automl[ray]'"
MAX_RESTARTS = 3  # a worker's node may die this many times before the worker is given up
POLL_SECONDS = 1.0  # the driver's loop: finished trials shown, dead trials reaped
STOP_SECONDS = 15.0  # the most the driver waits for killed actors to be gone
PROBE_SECONDS = 3.0  # ray.init waits minutes on an address nobody answers: probe it first
CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")  # written by `ray start --head`


def parse_resources(resources: dict[str, float] | None) -> tuple[float, float]:
    """`{"CPU": 1, "GPU": 0}` -> (cpus, gpus) per trial, checked."""
    resources = dict(resources or {})
    unknown = sorted(set(resources) - {"CPU", "GPU"})
    if unknown:
        raise ClusterError(f"resources_per_trial: unknown resource {unknown[0]!r} (use CPU and GPU)")
    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    if cpus <= 0 or gpus < 0:
        raise ClusterError(f"resources_per_trial: CPU must be > 0 and GPU >= 0, not CPU={cpus:g} GPU={gpus:g}")
    return cpus, gpus


def _bootstrap_address(address: str) -> str | None:
    """The host:port `ray.init(address)` will dial, or None when no cluster is known ("auto")."""
    if address == "auto":
        found = os.environ.get("RAY_ADDRESS") or (
            CURRENT_CLUSTER.read_text().strip() if CURRENT_CLUSTER.is_file() else ""
        )
        return found or None
    return address.removeprefix("ray://")


def _probe(address: str, given: str):
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {given!r}: not an address (use HOST:PORT, ray://HOST:PORT, auto or local)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS):
            pass
    except OSError as exc:
        raise ClusterError(f"--ray {given!r}: no Ray cluster answers at {address} ({exc})") from None


class RayCluster:
    """A connection to a Ray cluster (or a local instance this search started and stops)."""

    def __init__(self, address: str):
        try:
            import ray
        except ImportError:
            raise ClusterError(f"Ray is not installed: {INSTALL}") from None
        self.ray, self.address, self.owned = ray, address, address == "local"
        self.actors: list[Any] = []
        self.calls: list[Any] = []  # the actors' running `run` calls
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls of its own
        if not ray.is_initialized():
            if self.owned:
                ray.init(address="local", include_dashboard=False, log_to_driver=False)
            else:
                target = _bootstrap_address(address)
                if target is None:
                    raise ClusterError(
                        "--ray auto: no running Ray cluster found (RAY_ADDRESS is unset and `ray start --head` "
                        "has not run here); give its address, or use --ray local"
                    )
                _probe(target, address)
                try:
                    ray.init(address=address, log_to_driver=False)
                except Exception as exc:  # ConnectionError, RuntimeError: version mismatch, auth
                    raise ClusterError(f"--ray {address!r}: cannot connect: {type(exc).__name__}: {exc}") from None

    def run(
        self,
        searches: list,
        data,
        epochs: int,
        study,
        cpus: float,
        gpus: float,
        report: Callable,
        reap: Callable[[], None],
        end_run: Callable[[str, str], None],
    ) -> list[dict]:
        """Start one actor per search (each `search.fit(data=..., epochs=...)` on the shared study);
        until all are done, show newly finished trials (`report(study, trial)`) and reap dead ones.
        Returns each worker's outcome. Interrupted (Ctrl-C, SIGTERM): every actor is killed and the
        trials they were running are failed, then the interruption goes on."""
        from optuna.trial import TrialState

        ray = self.ray
        threads = max(1, int(cpus))
        env = {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(min(2, threads))}
        if gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU worker must not claim the node's GPUs
        remote = ray.remote(RayWorker).options(
            num_cpus=cpus,
            num_gpus=gpus,
            max_restarts=MAX_RESTARTS,
            max_task_retries=-1,  # the worker's call runs again on its restarted actor: it rejoins
            scheduling_strategy="SPREAD",  # over the nodes: one machine's loss costs the fewest workers
            runtime_env={"env_vars": env},
        )
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        seen = {t.number for t in study.get_trials(deepcopy=False, states=finished)}

        def show_new():
            for t in study.get_trials(deepcopy=False, states=finished):
                if t.number not in seen:
                    seen.add(t.number)
                    report(study, t)

        outcomes: list[dict] = []
        with _sigterm_interrupts():
            try:
                ref = ray.put(data)
                self.actors = [remote.remote() for _ in searches]
                pending = {a.run.remote(s, ref, epochs): i for i, (a, s) in enumerate(zip(self.actors, searches))}
                self.calls = list(pending)
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_SECONDS)
                    for call in done:
                        index = pending.pop(call)
                        try:
                            outcomes.append(ray.get(call))
                        except Exception as exc:  # the actor died for good (restarts used up)
                            outcomes.append({"index": index, "status": "DIED", "reason": f"{type(exc).__name__}"})
                    reap()
                    show_new()
            except BaseException as exc:
                self.stop(study, f"the search driver was stopped ({type(exc).__name__})", end_run)
                raise
        reap()
        show_new()
        return outcomes

    def stop(self, study, reason: str, end_run: Callable[[str, str], None] | None = None):
        """Kill every actor (no restart), then fail the trials they were running (MLflow runs KILLED)."""
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already dead
                self.ray.kill(actor, no_restart=True)
        # the kill is asynchronous: settle the trials once the actors are gone and their trial
        # processes (isolation.py) have seen it, or a last epoch report would mark the run FAILED
        with contextlib.suppress(Exception):
            self.ray.wait(self.calls, num_returns=len(self.calls), timeout=STOP_SECONDS)
        time.sleep(2 * WATCH_SECONDS)
        ids = {a._actor_id.hex() for a in self.actors}
        fail_trials_of(study, lambda owner: owner.get("ray_actor") in ids, reason, end_run)

    def check_fits(self, cpus: float, gpus: float) -> None:
        """A Ray instance this search started (`local`) cannot grow: a worker it cannot place would
        wait forever, so asking more than it has is an error, and the instance is shut down. (A
        cluster given by address may autoscale; there the workers wait for nodes.)"""
        if not self.owned:
            return
        have = self.ray.cluster_resources()
        for name, wanted, flag in (("CPU", cpus, "--cpus-per-trial"), ("GPU", gpus, "--gpus-per-trial")):
            if wanted > have.get(name, 0.0) + 1e-9:
                self.close()
                raise ClusterError(
                    f"{flag} {wanted:g}: the local Ray instance has {have.get(name, 0.0):g} {name}(s), so no "
                    "worker could ever start"
                )

    def close(self):
        self.actors = []
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


class RayWorker:
    """One automl worker inside a Ray actor: a copy of the driver's search, run on its study."""

    def __init__(self):
        import ray

        context = ray.get_runtime_context()
        # recorded on every trial this actor (or its trial process) trains: recovery.worker_id
        os.environ[RAY_NODE_ENV], os.environ[RAY_ACTOR_ENV] = context.get_node_id(), str(context.get_actor_id())

    def run(self, search, data, epochs: int) -> dict:
        try:
            search.fit(data=data, epochs=epochs)
            status, reason = "FINISHED", None
        except NoCompleteTrial as exc:  # the driver decides for the whole study
            status, reason = "NO_COMPLETE_TRIAL", str(exc)
        import ray

        context = ray.get_runtime_context()
        restarted = context.was_current_actor_reconstructed  # after its node died: Ray made it again
        return {
            "index": search.worker,
            "worker": worker_id(),
            "status": status,
            "reason": reason,
            "restarted": restarted,
        }


class _sigterm_interrupts:
    """SIGTERM on the driver stops the search like Ctrl-C (actors killed, trials failed)."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():

            def stop(signum, frame):
                raise SystemExit(128 + signum)

            self.previous = signal.signal(signal.SIGTERM, stop)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def describe(outcomes: list[dict]) -> str:
    """One line on how the workers ended, e.g. "2 finished; 1 restarted by Ray"."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    line = ", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in sorted(counts.items()))
    restarted = sum(bool(o.get("restarted")) for o in outcomes)
    return line + (f"; {restarted} restarted by Ray (its node or process died)" if restarted else "")
