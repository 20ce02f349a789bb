"""Live progress of a search on stderr.

In a terminal: a rich progress bar (trials finished of N, complete/pruned/failed counts, best score
and its trial, ETA and what is left of a time budget) with one line per finished trial scrolling
above it. Elsewhere (CI logs, pipes, notebooks) only the lines, since a redrawn bar would be noise.
`Search(verbose=False)` / `automl search --quiet` make no `SearchProgress` at all.
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from . import records
from .ranking import FINISHED, leaderboard_trials, pareto_trials

COLORS = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


def say(text: str, progress: SearchProgress | None = None):
    """Print a rich-markup line on stderr, above the live bar when there is one."""
    (progress.console if progress else Console(stderr=True, highlight=False, emoji=False)).print(text, soft_wrap=True)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class _EtaColumn(ProgressColumn):
    """ETA from this run's mean trial time, capped by the time budget; re-rendered every refresh."""

    def __init__(self, progress: SearchProgress):
        super().__init__()
        self.progress = progress

    def render(self, task) -> Text:
        p = self.progress
        text = f"ETA {_clock(p.eta())}"
        if p.timeout is not None:
            text += f" · budget {_clock(p.budget_left())} left"
        return Text(text, style="cyan")


class SearchProgress:
    """Counts and best score of one search run; `trial_finished` is an Optuna callback's body."""

    def __init__(
        self,
        max_trials: int | None,
        objective: str,
        *,
        timeout: float | None = None,
        done_before: int = 0,
        console: Console | None = None,
        title: str = "trials",
    ):
        self.console = console or Console(stderr=True, highlight=False, emoji=False)
        self.max_trials, self.objective, self.timeout = max_trials, objective, timeout
        self.done_before, self.done, self.finished_here = done_before, done_before, 0
        self.counts = {"complete": 0, "pruned": 0, "fail": 0}
        self.best = "no complete trial yet"
        self.started = time.monotonic()
        self._bar = None
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TextColumn("{task.fields[best]}"),
                _EtaColumn(self),
                TimeElapsedColumn(),
                console=self.console,
                refresh_per_second=2,
            )
            self._task = self._bar.add_task(
                title,
                total=max_trials,  # None (the timeout ends the search): a bar without an end
                completed=min(done_before, max_trials or done_before),
                counts=self._counts_text(),
                best=self.best,
            )
            self._bar.start()

    # ------------------------------------------------------------ numbers

    def eta(self) -> float | None:
        """Seconds until `max_trials` are finished at this run's pace, or the budget ends if sooner."""
        left = None
        if self.finished_here and self.max_trials is not None:
            pace = (time.monotonic() - self.started) / self.finished_here
            left = pace * max(0, self.max_trials - self.done)
        budget = self.budget_left()
        if budget is not None:
            left = budget if left is None else min(left, budget)
        return left

    def budget_left(self) -> float | None:
        return None if self.timeout is None else max(0.0, self.timeout - (time.monotonic() - self.started))

    def _counts_text(self) -> str:
        c = self.counts
        return f"[green]{c['complete']} complete[/] [yellow]{c['pruned']} pruned[/] [red]{c['fail']} failed[/]"

    # ------------------------------------------------------------ events

    def trial_finished(self, study: optuna.Study, trial: optuna.trial.FrozenTrial):
        mine = [t for t in study.get_trials(deepcopy=False) if records.COPIED_FROM not in t.user_attrs]
        states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "fail": TrialState.FAIL}
        self.counts = {k: sum(t.state == s for t in mine) for k, s in states.items()}
        self.done = sum(t.state in FINISHED for t in mine)
        self.finished_here += 1
        if len(study.directions) > 1:
            names = study.user_attrs.get(records.OBJECTIVE_NAMES, [])
            value = " ".join(f"{k}={v:.4g}" for k, v in zip(names, trial.values or []))
            self.best = f"Pareto front: {len(pareto_trials(study))} trials"
        else:
            value = f"{self.objective}={trial.value:.4f}" if trial.value is not None else ""
            top = leaderboard_trials(study)
            self.best = f"best {top[0].value:.4f} (trial {top[0].number})" if top else "no complete trial yet"
        reason = trial.user_attrs.get(records.FAIL_REASON, "")[:160]
        seconds = f"{trial.duration.total_seconds():.1f} s" if trial.duration else ""
        color = COLORS.get(trial.state.name, "white")
        self.console.print(
            f"trial {trial.number:>3} [{color}]{trial.state.name:<8}[/] {value} {reason} {seconds} "
            f"| {self.done}{'' if self.max_trials is None else f'/{self.max_trials}'} finished | {self.best}",
            soft_wrap=True,
        )
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=min(self.done, self.max_trials or self.done),
                counts=self._counts_text(),
                best=self.best,
            )

    def close(self):
        """Stop redrawing the bar (it stays on screen as it last was)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    @property
    def live(self) -> bool:
        return self._bar is not None
