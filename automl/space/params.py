"""Typed search parameters and the conditions that switch them on.

A parameter is a small pydantic model; `suggest()` asks an Optuna trial (or
`optuna.trial.FixedTrial`) for a value under a flat, readable name.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

Scalar = bool | int | float | str | None

_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "ge": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "le": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}


def condition_holds(expected: Any, actual: Any) -> bool:
    """`expected` is a scalar (equality), a list (membership) or {op: value} with op in _OPS."""
    if isinstance(expected, dict):
        return all(_OPS[op](actual, value) for op, value in expected.items())
    if isinstance(expected, list):
        return actual in expected
    return actual == expected


def check_condition(expected: Any) -> None:
    """Raise ValueError for an unknown comparison operator."""
    if isinstance(expected, dict):
        unknown = sorted(set(expected) - set(_OPS))
        if unknown:
            raise ValueError(f"unknown operator {unknown[0]!r} in 'when' (use one of {', '.join(_OPS)})")


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    when: dict[str, Any] | None = Field(
        default=None, description="Only sample this parameter when every named parameter matches."
    )


class Int(_Param):
    """An integer in [low, high], optionally on a log scale or with a step."""

    type: Literal["int"] = "int"
    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low < 1:
            raise ValueError("log scale needs low >= 1")
        if self.log and self.step != 1:
            raise ValueError("log scale cannot be combined with step")
        if self.step < 1:
            raise ValueError("step must be >= 1")
        return self

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


class Float(_Param):
    """A float in [low, high], optionally on a log scale or with a step."""

    type: Literal["float"] = "float"
    low: float
    high: float
    step: float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _check(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log scale cannot be combined with step")
        return self

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class Categorical(_Param):
    """One of a list of choices (numbers, strings, booleans)."""

    type: Literal["categorical"] = "categorical"
    choices: list[Scalar] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"choices contain duplicates: {self.choices}")
        return self

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, self.choices)


class Bool(_Param):
    """True or False."""

    type: Literal["bool"] = "bool"

    def suggest(self, trial, name: str) -> bool:
        return trial.suggest_categorical(name, [False, True])


class Fixed(_Param):
    """A constant: recorded in the configuration, never sampled."""

    type: Literal["fixed"] = "fixed"
    value: Any

    def suggest(self, trial, name: str):
        return self.value


class OneOf(_Param):
    """One name, a range per condition: the first alternative whose `when` holds is sampled.

    Why: some ranges depend on another choice (plain SGD needs learning rates about ten times
    Adam's), and a single range wide enough for both wastes most trials on rates that cannot learn.
    The name stays one Optuna parameter (Optuna allows a float's range to change between trials, not
    its kind or log scale), so start configurations, warm starts and MLflow see `learning_rate`.
    Multivariate TPE models the name over the first range it saw: its joint proposals for another
    alternative are used where they fall inside that alternative's range, else the value is drawn
    over that range on its own (Optuna's fallback); `qmc` does the same over its first trial's space.
    `gp` and `cmaes` model only what every trial shares and draw it at random, as they draw
    conditional parameters.
    """

    type: Literal["one_of"] = "one_of"
    one_of: list[Annotated[Int | Float, Field(discriminator="type")]] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self):
        for i, problem in one_of_problems(self.one_of):
            raise ValueError(f"one_of[{i}]: {problem}")
        return self

    def pick(self, holds) -> Int | Float | None:
        """The first alternative whose condition `holds(when)` accepts (None: the parameter is absent)."""
        return next((alt for alt in self.one_of if alt.when is None or holds(alt.when)), None)

    def union(self) -> Int | Float:
        """One range over every alternative (KerasTuner declares each name once, up front)."""
        first = self.one_of[0]
        low, high = min(a.low for a in self.one_of), max(a.high for a in self.one_of)
        return first.model_copy(update={"low": low, "high": high, "when": None})

    def suggest(self, trial, name: str):
        return self.union().suggest(trial, name)


def one_of_problems(alternatives: list) -> list[tuple[int, str]]:
    """(index, problem) for each alternative a one_of cannot take."""
    problems, first = [], alternatives[0]
    for i, alt in enumerate(alternatives):
        if not isinstance(alt, (Int, Float)):
            problems.append((i, "an alternative must be an int or float parameter"))
        elif isinstance(first, (Int, Float)) and (alt.type, alt.log, alt.step) != (first.type, first.log, first.step):
            problems.append((i, "differs from the first in type, log or step (Optuna keeps one kind per name)"))
        elif alt.when is None and i < len(alternatives) - 1:
            problems.append((i, "has no 'when': only the last alternative may go without one"))
    return problems


Param = Annotated[Int | Float | Categorical | Bool | Fixed, Field(discriminator="type")]
PARAM_TYPES = ("int", "float", "categorical", "bool", "fixed")
param_adapter: TypeAdapter = TypeAdapter(Param)


def check_flat_section(
    section: str,
    items: dict[str, Any],
    known: dict[str, Any],
    value_problem,
    int_keys: tuple[str, ...] = (),
) -> list[tuple[str, str]]:
    """(key path, problem) for every node of a flat section (`compression:`, `pretrain:`) that names an
    unknown key or can take a value its key does not allow (`value_problem(key, value)` says why);
    a range is checked at its ends, as floats unless the key is in `int_keys`."""
    problems = []
    for key, node in items.items():
        path = f"{section}.{key}"
        if key not in known:
            problems.append((path, f"unknown key (allowed: {', '.join(known)})"))
            continue
        if isinstance(node, Fixed):
            values = [node.value]
        elif isinstance(node, Categorical):
            values = list(node.choices)
        elif isinstance(node, Bool):
            values = [False, True]
        elif isinstance(node, (Float, Int)):
            values = [node.low, node.high]
            if isinstance(node, Int) and key not in int_keys:
                values = [float(v) for v in values]
        else:
            problems.append((path, "must be a value or a parameter, not a group or repeat"))
            continue
        for value in values:
            problem = value_problem(key, value)
            if problem:
                problems.append((path, problem))
                break
    return problems


def flat_settings(section: str, defaults: dict[str, Any], value_problem, config: dict | None) -> dict[str, Any]:
    """A flat section's defaults overlaid with the sampled values, checked (a configuration built in
    Python too): a bad value raises ValueError naming `section.key`."""
    settings = {**defaults, **(config or {})}
    for key, value in settings.items():
        problem = value_problem(key, value)
        if problem:
            raise ValueError(f"{section}.{key}: {problem}")
    return settings
