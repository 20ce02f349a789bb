"""Samplers and pruners, chosen by name from one table each; every sampler takes the search's seed.

Samplers: `tpe` (default: multivariate, `group=True` for conditional spaces, constant liar for
parallel workers), `tpe-random` (the same with every third trial random, as BOHB does), `random`,
`grid` (every combination of a small discrete space), `cmaes` (continuous parameters; categorical
ones fall back to TPE), `qmc` (Sobol, even coverage), `nsga2` (evolutionary, multi-objective), `gp`
(Gaussian process; needs PyTorch: `pip install 'automl[gp]'`), and KerasTuner's own tuners
`kt-random`, `kt-bayesian`, `kt-hyperband` (keras_tuner.py).
Pruners: `median`, `percentile` (keeps the top 25%), `successive-halving` (ASHA), `hyperband` (its
largest round is the trial's epochs), `patient` (Optuna's PatientPruner around the median: a trial is
pruned only once its score has fallen for 2 epochs; a plateau is tolerated), `none`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from .errors import StrategyError

MAX_GRID = 10_000


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler may be built from."""

    seed: int | None = None
    max_trials: int = 20
    space: object = None
    objective: str = "val_accuracy"
    direction: str = "maximize"
    epochs: int = 10

    @property
    def startup(self) -> int:
        """Random trials before a model-based sampler takes over."""
        return max(3, min(10, self.max_trials // 3))


@dataclass(frozen=True)
class Sampler:
    """One entry of the table: how to make it, and what it decides instead of the search."""

    make: Callable[[SamplerContext], optuna.samplers.BaseSampler]
    keras_tuner: bool = False  # a KerasTuner oracle: one objective, no constraints, no hypermodel
    schedules_epochs: bool = False  # decides how long each trial trains (Hyperband): no pruner, its own runner


class RandomInterleavedSampler(optuna.samplers.BaseSampler):
    """A model-based sampler with every `every`-th trial (by trial number) drawn at random instead.

    Why: with the few dozen trials of a short budget, TPE's "good" group is the best two or three
    trials; when its random start-up trials all land in a poor region it keeps sampling around
    them (a 240 s ucr_OSULeaf search stayed near chance, bench/RESULTS.md "Suite, 240 s"). Random
    interleaving (BOHB samples a third of its configurations at random) bounds how badly that can
    go. Chosen by trial number, so parallel workers and reruns with one seed agree."""

    def __init__(self, model: optuna.samplers.BaseSampler, seed: int | None = None, every: int = 3):
        self.model, self.every = model, every
        self.random = optuna.samplers.RandomSampler(seed=None if seed is None else seed + 7919)

    def _random_turn(self, trial) -> bool:
        return trial.number % self.every == self.every - 1

    def reseed_rng(self) -> None:
        self.model.reseed_rng()
        self.random.reseed_rng()

    def infer_relative_search_space(self, study, trial):
        return {} if self._random_turn(trial) else self.model.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return {} if self._random_turn(trial) else self.model.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        sampler = self.random if self._random_turn(trial) else self.model
        return sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.model.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.model.after_trial(study, trial, state, values)


def _tpe(c: SamplerContext):
    return optuna.samplers.TPESampler(
        seed=c.seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=c.startup
    )


def _cmaes(c: SamplerContext):
    fallback = optuna.samplers.TPESampler(seed=c.seed, n_startup_trials=c.startup)
    return optuna.samplers.CmaEsSampler(
        seed=c.seed, n_startup_trials=c.startup, independent_sampler=fallback, warn_independent_sampling=False
    )


def _gp(c: SamplerContext):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise StrategyError(
            "sampler 'gp' needs PyTorch, which is not installed: pip install 'automl[gp]' (or pick tpe)"
        ) from None
    return optuna.samplers.GPSampler(seed=c.seed, n_startup_trials=c.startup)


def _keras_tuner(name: str) -> Callable[[SamplerContext], optuna.samplers.BaseSampler]:
    def make(c: SamplerContext):
        from .keras_tuner import KerasTunerSampler

        return KerasTunerSampler(
            name, c.space, c.objective, c.direction, seed=c.seed, max_trials=c.max_trials, epochs=c.epochs
        )

    return make


SAMPLERS: dict[str, Sampler] = {
    "tpe": Sampler(_tpe),
    "tpe-random": Sampler(lambda c: RandomInterleavedSampler(_tpe(c), c.seed)),
    "random": Sampler(lambda c: optuna.samplers.RandomSampler(seed=c.seed)),
    "grid": Sampler(lambda c: optuna.samplers.GridSampler(grid_of(c.space), seed=c.seed)),
    "cmaes": Sampler(_cmaes),
    "qmc": Sampler(
        lambda c: optuna.samplers.QMCSampler(
            seed=c.seed, qmc_type="sobol", scramble=True, warn_independent_sampling=False
        )
    ),
    "nsga2": Sampler(
        lambda c: optuna.samplers.NSGAIISampler(seed=c.seed, population_size=max(4, min(50, c.max_trials // 4)))
    ),
    "gp": Sampler(_gp),
    "kt-random": Sampler(_keras_tuner("kt-random"), keras_tuner=True),
    "kt-bayesian": Sampler(_keras_tuner("kt-bayesian"), keras_tuner=True),
    "kt-hyperband": Sampler(_keras_tuner("kt-hyperband"), keras_tuner=True, schedules_epochs=True),
}


def _median() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)


def _patient(epochs: int) -> optuna.pruners.BasePruner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.PatientPruner(_median(), patience=2)


PRUNERS: dict[str, Callable[[int], optuna.pruners.BasePruner]] = {
    "median": lambda epochs: _median(),
    "percentile": lambda epochs: optuna.pruners.PercentilePruner(25.0, n_startup_trials=3, n_warmup_steps=1),
    "successive-halving": lambda epochs: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    "hyperband": lambda epochs: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=max(2, epochs), reduction_factor=3
    ),
    "patient": _patient,
    "none": lambda epochs: optuna.pruners.NopPruner(),
}


def check_names(sampler: str, pruner: str) -> None:
    if sampler not in SAMPLERS:
        raise StrategyError(f"unknown sampler {sampler!r} (choose from {', '.join(SAMPLERS)})")
    if pruner not in PRUNERS:
        raise StrategyError(f"unknown pruner {pruner!r} (choose from {', '.join(PRUNERS)})")


def make_sampler(
    name: str,
    seed: int | None = None,
    max_trials: int = 20,
    *,
    space=None,
    objective: str = "val_accuracy",
    direction: str = "maximize",
    epochs: int = 10,
) -> optuna.samplers.BaseSampler:
    """Constraints reach the samplers through `trial.set_constraint` (Optuna 5), not an argument."""
    check_names(name, "none")
    context = SamplerContext(seed, max_trials, space, objective, direction, epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name].make(context)


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
            n = round((param.high - param.low) / param.step)
            grid[name] = [param.low + i * param.step for i in range(n + 1)]
        else:
            problems.append(name)
    if problems:
        raise StrategyError(
            f"sampler 'grid' needs discrete parameters; {', '.join(problems)} "
            "is continuous or too wide (give it a list of values or a step)"
        )
    size = 1
    for values in grid.values():
        size *= len(values)
    if size > MAX_GRID:
        raise StrategyError(f"the grid has {size} combinations (more than {MAX_GRID}); use tpe or random")
    return grid


def make_pruner(name: str, epochs: int = 10) -> optuna.pruners.BasePruner:
    check_names("tpe", name)
    return PRUNERS[name](epochs)
