"""Issue 17's "the search alone earns its place" figure, from the suite's recorded best-so-far curves.

Per task and seed, `automl-no-start` (the task classes' sampler under the budget schedule, no start list)
against `automl-no-start-random` (the same with random sampling): the time the first takes to reach
the final best validation objective of the second, divided by the time the second took to reach it.
Goal: median over seeds <= 0.5. A seed whose search never reaches it counts as infinitely slow.
"""

from __future__ import annotations

import numpy as np

SEARCH, RANDOM = "automl-no-start", "automl-no-start-random"
# other samplers without the start list, each also against random
OTHERS = ("automl-no-start-tpe-random", "automl-no-start-tpe")
GOAL = 0.5


def reach_time(curve: list, target: float, direction: str) -> float | None:
    """Seconds at which a best-so-far curve first is at least as good as `target`; None if never."""
    for seconds, best in curve:
        if (best <= target) if direction == "minimize" else (best >= target):
            return float(seconds)
    return None


def seed_ratio(search: dict, random: dict) -> tuple[float, float, float]:
    """(time ratio, inf if never; random's final best; the search's final best) for one seed's rows."""
    direction = random["curve_direction"]
    target = random["curve"][-1][1]
    t_random = max(reach_time(random["curve"], target, direction) or 0.0, 1e-9)  # its own best: always reached
    t_search = reach_time(search["curve"], target, direction)
    ratio = float("inf") if t_search is None else t_search / t_random
    return ratio, target, search["curve"][-1][1]


def section(by: dict, tasks: list[str]) -> list[str]:
    """Markdown lines for the default search and every other no-start sampler that has rows."""
    lines = []
    for method in (SEARCH, *OTHERS):
        lines += _method_section(by, tasks, method)
    return lines


def _method_section(by: dict, tasks: list[str], method: str) -> list[str]:
    """Markdown lines: one per task that has both methods on common seeds (`by[task, method][seed]`)."""
    lines = []
    for task in tasks:
        search, random = by.get((task, method), {}), by.get((task, RANDOM), {})
        seeds = sorted(s for s in search if s in random and search[s].get("curve") and random[s].get("curve"))
        if not seeds:
            continue
        per_seed = [seed_ratio(search[s], random[s]) for s in seeds]
        median = float(np.median([r for r, _, _ in per_seed]))
        cells = ", ".join(
            f"seed {s}: {'never' if r == float('inf') else f'{r:.2f}'} (random best {a:.4g}, search best {b:.4g})"
            for s, (r, a, b) in zip(seeds, per_seed)
        )
        verdict = "met" if median <= GOAL else "not met"
        lines.append(f"- {task}: median time ratio {median:.2f} (goal <= {GOAL}: {verdict}); {cells}")
    if lines:
        head = (
            f"The search alone (`{method}` vs `{RANDOM}`): time to reach the random search's final best "
            "validation objective / the random search's time to reach it, per seed (bench/search_alone.py):"
        )
        lines = ["", head, "", *lines]
    return lines
