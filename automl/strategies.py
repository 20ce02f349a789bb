"""Samplers and pruners, chosen by name; every sampler takes the search's seed.

Samplers: `tpe` (default: multivariate, `group=True` for conditional spaces, constant liar for
parallel workers), `random`, `grid` (every combination of a small discrete space), `cmaes`
(continuous parameters; categorical ones fall back to TPE), `qmc` (Sobol, even coverage), `nsga2`
(evolutionary, multi-objective), `gp` (Gaussian process; needs PyTorch: `pip install 'automl[gp]'`).
Pruners: `median`, `percentile` (keeps the top 25%), `successive-halving` (ASHA), `hyperband` (its
largest round is the trial's epochs), `patient` (Optuna's PatientPruner around the median: a trial is
pruned only once its score has fallen for 2 epochs; a plateau is tolerated), `none`.
"""
from __future__ import annotations

import warnings
import optuna

SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc", "nsga2", "gp")
PRUNERS = ("median", "percentile", "successive-halving", "hyperband", "patient", "none")
MAX_GRID = 10_000


class StrategyError(ValueError):
    """A sampler or pruner that cannot run with these settings."""


def check_names(sampler: str, pruner: str) -> None:
    if sampler not in SAMPLERS and not sampler.startswith("kt-"):
        raise StrategyError(f"unknown sampler {sampler!r} (choose from {', '.join(SAMPLERS)})")
    if pruner not in PRUNERS:
        raise StrategyError(f"unknown pruner {pruner!r} (choose from {', '.join(PRUNERS)})")


def make_sampler(name: str, seed: int | None = None, max_trials: int = 20, *, space=None) -> optuna.samplers.BaseSampler:
    """Constraints reach the samplers through `trial.set_constraint` (Optuna 5), not an argument."""
    check_names(name, "none")
    startup = max(3, min(10, max_trials // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                              n_startup_trials=startup)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "grid":
            return optuna.samplers.GridSampler(grid_of(space), seed=seed)
        if name == "cmaes":
            fallback = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, independent_sampler=fallback,
                                                warn_independent_sampling=False)
        if name == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, qmc_type="sobol", scramble=True,
                                              warn_independent_sampling=False)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, max_trials // 4)))
        if name == "gp":
            try:
                import torch  # noqa: F401
            except ImportError:
                raise StrategyError("sampler 'gp' needs PyTorch, which is not installed: "
                                    "pip install 'automl[gp]' (or pick tpe)") from None
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    raise StrategyError(f"sampler {name!r} is run by KerasTuner, not Optuna")


def grid_of(space) -> dict[str, list]:
    """Every parameter of a discrete space with all its values; continuous ones are refused."""
    from .space import Bool, Categorical, Float, Int

    if space is None:
        raise StrategyError("sampler 'grid' needs the search space")
    grid, problems = {}, []
    for name, param in space.parameters().items():
        if isinstance(param, Categorical):
            grid[name] = list(param.choices)
        elif isinstance(param, Bool):
            grid[name] = [False, True]
        elif isinstance(param, Int) and not param.log and (param.high - param.low) // (param.step or 1) < 64:
            grid[name] = list(range(param.low, param.high + 1, param.step or 1))
        elif isinstance(param, Float) and param.step:
            n = int(round((param.high - param.low) / param.step))
            grid[name] = [param.low + i * param.step for i in range(n + 1)]
        else:
            problems.append(name)
    if problems:
        raise StrategyError(f"sampler 'grid' needs discrete parameters; {', '.join(problems)} "
                            "is continuous or too wide (give it a list of values or a step)")
    size = 1
    for values in grid.values():
        size *= len(values)
    if size > MAX_GRID:
        raise StrategyError(f"the grid has {size} combinations (more than {MAX_GRID}); use tpe or random")
    return grid


def make_pruner(name: str, epochs: int = 10) -> optuna.pruners.BasePruner:
    check_names("tpe", name)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=3, n_warmup_steps=1)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, epochs), reduction_factor=3)
    if name == "patient":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
                                                patience=2)
    return optuna.pruners.NopPruner()
