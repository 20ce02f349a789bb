"""The search space: a tree of parameters, groups and repeats, sampled into a configuration.

A space has up to three sections. `architecture` is an ordered mapping of stages; a stage is a
block (a mapping with a `block` key) or a `repeat` of one. `training` holds optimiser settings.
`compression` (optional: pruning and quantization-aware training after training, see
compression.py) and `pretrain` (optional: self-supervised pretraining on unlabeled samples, see
pretrain.py) hold flat keys whose sampled names carry the prefix `compression.` or `pretrain.`.
Values are parameters (`{type: int, low: 1, high: 3}`), plain constants, or lists (shorthand
for a categorical). Any parameter or group may carry `when:` to exist only when other
parameters take given values (on a repeat's count, `when:` switches the whole repeat); a repeated
group's items exist only while `num_<key> > i`. `one_of:` gives one parameter a range per
condition (params.OneOf).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from .compression import check_compression
from .params import (
    PARAM_TYPES,
    Bool,
    Categorical,
    Fixed,
    Float,
    Int,
    OneOf,
    _Param,
    check_condition,
    condition_holds,
    one_of_problems,
    param_adapter,
)
from .pretrain import check_pretrain

SECTIONS = ("architecture", "training", "compression", "pretrain")
FLAT_SECTIONS = ("compression", "pretrain")  # flat keys, sampled with the section name as prefix
TOP_LEVEL_KEYS = ("name", "description", "task", "input", *SECTIONS, "start")
TASKS = ("classification", "regression")


class SpaceError(ValueError):
    """A space that cannot be used: names the source, the key path and what is wrong."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        lines = [f"{prefix}{path or '<top>'}: {msg}" for path, msg in problems]
        super().__init__("invalid search space\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0])


@dataclass(frozen=True)
class Repeat:
    """`each` (a mapping) repeated `count` times; the count is sampled as `num_<key>`."""

    count: Int | int
    each: Any


@dataclass(frozen=True)
class Group:
    """An ordered mapping of named nodes, optionally switched on by `when`."""

    items: dict[str, Any]
    when: dict[str, Any] | None = None


@dataclass
class Configuration:
    """One sampled point: nested sections for the builder, flat `params` for logging."""

    architecture: dict[str, Any]
    training: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    compression: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- parsing


class _Parser:
    def __init__(self):
        self.problems: list[tuple[str, str]] = []
        self.known: set[str] = set()  # flat names defined so far, outside repeats

    def error(self, path: str, msg: str):
        self.problems.append((path, msg))

    def node(self, raw: Any, path: str, flat: str, siblings: set[str], in_repeat: bool):
        if isinstance(raw, Repeat):  # built in Python: re-check like YAML
            raw = {"repeat": raw.count, "each": raw.each}
        elif isinstance(raw, Group):
            raw = {**raw.items, **({"when": raw.when} if raw.when else {})}
        node: _Param | Repeat | Group | None
        if isinstance(raw, _Param):
            node = raw
            self._check_when(raw.when, path, siblings, in_repeat)
            for i, alt in enumerate(raw.one_of if isinstance(raw, OneOf) else []):
                self._check_when(alt.when, f"{path}.one_of[{i}]", siblings, in_repeat)
        elif isinstance(raw, dict) and "one_of" in raw and "block" not in raw:
            node = self.one_of(raw, path, siblings, in_repeat)
            if node is None:
                return None
        elif isinstance(raw, dict) and set(raw) >= {"repeat", "each"}:
            node = self.repeat(raw, path, flat, in_repeat)
        elif isinstance(raw, dict) and raw.get("type") in PARAM_TYPES:
            try:
                param = param_adapter.validate_python(raw)
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err["loc"][1:])  # drop the discriminator tag
                    self.error(f"{path}.{loc}" if loc else path, err["msg"].removeprefix("Value error, "))
                return None
            self._check_when(param.when, path, siblings, in_repeat)
            node = param
        elif isinstance(raw, dict) and "type" in raw and "block" not in raw:
            self.error(f"{path}.type", f"unknown parameter type {raw['type']!r} (use one of {', '.join(PARAM_TYPES)})")
            return None
        elif isinstance(raw, dict):
            node = self.group(raw, path, flat, in_repeat)
        elif isinstance(raw, list):
            try:
                node = Categorical(choices=raw)
            except ValidationError as exc:
                self.error(path, exc.errors()[0]["msg"].removeprefix("Value error, "))
                return None
        else:
            node = Fixed(value=raw)
        if not in_repeat and not isinstance(node, (Group, Repeat)):
            self.known.add(flat)
        return node

    def one_of(self, raw: dict, path: str, siblings: set[str], in_repeat: bool) -> OneOf | None:
        extra = set(raw) - {"one_of", "when"} - ({"type"} if raw.get("type") == "one_of" else set())
        if extra:
            self.error(f"{path}.{sorted(extra)[0]}", "a one_of takes only 'one_of' (a list of parameters) and 'when'")
            return None
        alternatives = raw["one_of"]
        if not isinstance(alternatives, list) or len(alternatives) < 2:
            self.error(f"{path}.one_of", "must be a list of at least 2 int or float parameters, each with its 'when'")
            return None
        parsed, before = [], len(self.problems)
        for i, alt in enumerate(alternatives):
            # in_repeat=True: an alternative is not a name of its own that later conditions may read
            parsed.append(self.node(alt, f"{path}.one_of[{i}]", "", siblings, in_repeat=True))
        if len(self.problems) > before:
            return None
        problems = one_of_problems(parsed)
        for i, problem in problems:
            self.error(f"{path}.one_of[{i}]", problem)
        if problems:
            return None
        node = OneOf(one_of=parsed, when=raw.get("when"))
        self._check_when(node.when, path, siblings, in_repeat)
        return node

    def group(self, raw: dict, path: str, flat: str, in_repeat: bool) -> Group:
        when = raw.get("when")
        siblings: set[str] = set()
        if when is not None:
            self._check_when(when, path, set(), in_repeat)
        items = {}
        for key, value in raw.items():
            if key == "when":
                continue
            if not isinstance(key, str) or not key.replace("_", "").isalnum():
                self.error(f"{path}.{key}", "names must be letters, digits and underscores")
                continue
            child = self.node(
                value, f"{path}.{key}" if path else key, f"{flat}.{key}" if flat else key, siblings, in_repeat
            )
            if child is not None:
                items[key] = child
            siblings.add(key)
        return Group(items=items, when=when if isinstance(when, dict) else None)

    def repeat(self, raw: dict, path: str, flat: str, in_repeat: bool) -> Repeat | None:
        extra = set(raw) - {"repeat", "each"}
        if extra:
            self.error(f"{path}.{sorted(extra)[0]}", "a repeat takes only 'repeat' and 'each'")
        count = raw["repeat"]
        if isinstance(count, Int):
            pass
        elif isinstance(count, dict):
            try:
                count = Int.model_validate({k: v for k, v in count.items() if k != "type"})
            except ValidationError as exc:
                for err in exc.errors():
                    self.error(
                        f"{path}.repeat." + ".".join(map(str, err["loc"])), err["msg"].removeprefix("Value error, ")
                    )
                return None
            if isinstance(count, Int) and count.low < 0:
                self.error(f"{path}.repeat.low", "a repeat count cannot be negative")
            if isinstance(count, Int):  # `when` on the count switches the whole repeat on or off
                self._check_when(count.when, f"{path}.repeat", set(), in_repeat)
        elif not isinstance(count, int) or isinstance(count, bool) or count < 0:
            self.error(f"{path}.repeat", "must be a non-negative integer or an int parameter")
            return None
        if isinstance(raw["each"], Group):
            raw = {**raw, "each": {**raw["each"].items, **({"when": raw["each"].when} if raw["each"].when else {})}}
        if not isinstance(raw["each"], dict):
            self.error(f"{path}.each", "must be a mapping (the repeated block)")
            return None
        if not in_repeat:
            self.known.add(_count_name(flat))
        each = self.group(raw["each"], f"{path}.each", f"{flat}.*", in_repeat=True)
        return Repeat(count=count, each=each)

    def _check_when(self, when, path: str, siblings: set[str], in_repeat: bool):
        if when is None:
            return
        if not isinstance(when, dict) or not when:
            self.error(f"{path}.when", "must be a mapping of parameter name to expected value")
            return
        for name, expected in when.items():
            try:
                check_condition(expected)
            except ValueError as exc:
                self.error(f"{path}.when.{name}", str(exc))
            if name not in siblings and name not in self.known:
                self.error(f"{path}.when.{name}", f"refers to {name!r}, which is not defined before it")


def _count_name(flat: str) -> str:
    head, _, last = flat.rpartition(".")
    return f"{head}.num_{last}" if head else f"num_{last}"


# ---------------------------------------------------------------- sampling


def _sample(node, trial, flat: str, scope: dict, out: dict):
    """Return the sampled value of `node` (or _ABSENT), recording flat names in `out`."""
    if isinstance(node, Group):
        if node.when and not _holds(node.when, {}, out):
            return _ABSENT
        values: dict[str, Any] = {}
        for key, child in node.items.items():
            value = _sample(child, trial, f"{flat}.{key}" if flat else key, values, out)
            if value is not _ABSENT:
                values[key] = value
        return values
    if isinstance(node, Repeat):
        name = _count_name(flat)
        if isinstance(node.count, Int) and node.count.when and not _holds(node.count.when, scope, out):
            return _ABSENT  # e.g. no convolutions over a bag of n-grams
        count = node.count.suggest(trial, name) if isinstance(node.count, Int) else node.count
        out[name] = count
        return [v for i in range(count) if (v := _sample(node.each, trial, f"{flat}.{i}", {}, out)) is not _ABSENT]
    if node.when and not _holds(node.when, scope, out):
        return _ABSENT
    if isinstance(node, OneOf):  # the range that this trial's other choices call for
        node = node.pick(lambda when: _holds(when, scope, out))
        if node is None:
            return _ABSENT
    value = node.suggest(trial, flat)
    out[flat] = value
    return value


def _holds(when: dict, scope: dict, flat: dict) -> bool:
    for name, expected in when.items():
        actual = scope[name] if name in scope else flat.get(name, _ABSENT)
        if actual is _ABSENT or not condition_holds(expected, actual):
            return False
    return True


class _Absent:
    def __repr__(self):
        return "<absent>"


_ABSENT = _Absent()


# ---------------------------------------------------------------- the space


class SearchSpace:
    """Architecture + training parameters; build from YAML (`load_space`) or from Python.

    >>> SearchSpace(architecture={"blocks": {"repeat": Int(low=1, high=3),
    ...                                      "each": {"block": "dense", "units": Int(low=16, high=128, log=True)}}},
    ...             training={"learning_rate": Float(low=1e-4, high=1e-2, log=True)})
    """

    def __init__(
        self,
        architecture: dict,
        training: dict | None = None,
        *,
        name: str = "custom",
        description: str = "",
        task: str | None = None,
        input: str | None = None,
        start: list[dict] | None = None,
        source: str | None = None,
        compression: dict | None = None,
        pretrain: dict | None = None,
        pretraining: bool = False,
    ):
        """`pretrain`: the section, checked here but searched only while `pretraining` (a search with
        unlabeled samples: `for_data`); until then the space samples and fingerprints as without it."""
        self.name, self.description, self.task, self.input = name, description, task, input
        self.source = source
        self.raw = {"architecture": architecture, "training": training or {}}
        if compression:  # only when given: the fingerprints of spaces without it stay as they were
            self.raw["compression"] = compression
        self.pretrain_raw = pretrain or {}
        self.pretraining = bool(pretraining and pretrain)
        if self.pretraining:
            self.raw["pretrain"] = self.pretrain_raw
        parser = _Parser()
        if task is not None and task not in TASKS:
            parser.error("task", f"must be one of {', '.join(TASKS)}, not {task!r}")
        trees = {}
        for section in SECTIONS:
            value = self.pretrain_raw if section == "pretrain" else self.raw.get(section, {})
            if not isinstance(value, dict):
                parser.error(section, "must be a mapping of names to parameters or blocks")
                continue
            flat = section if section in FLAT_SECTIONS else ""
            trees[section] = parser.group(value, section, flat, in_repeat=False)
        if "compression" in trees:
            parser.problems += check_compression(trees["compression"].items)
        if "pretrain" in trees:
            parser.problems += check_pretrain(trees["pretrain"].items)
        if not parser.problems:
            clash = set(trees["architecture"].items) & set(trees["training"].items)
            for key in sorted(clash):
                parser.error(f"training.{key}", "also defined in architecture; names must be unique")
        if parser.problems:
            raise SpaceError(parser.problems, source)
        self.architecture: Group = trees["architecture"]
        self.training: Group = trees["training"]
        self.compression: Group = trees["compression"]
        self.pretrain: Group = trees["pretrain"]
        self.start = self._check_start(start, source)

    def _check_start(self, start, source) -> list[dict]:
        """`start`: known-good configurations (flat names, the rest sampled) tried first by a new
        study, so a short search has a sound model early. Kept out of the fingerprint: adding one
        does not refuse a resume."""
        if start is None:
            return []
        if not isinstance(start, list):
            raise SpaceError(
                [("start", "must be a list of configurations (mappings of parameter names to values)")], source
            )
        params, problems = self.parameters(every_section=True), []
        for i, entry in enumerate(start):
            if not isinstance(entry, dict):
                problems.append((f"start[{i}]", "must be a mapping of parameter names to values"))
                continue
            for name, value in entry.items():
                if name not in params:
                    problems.append(
                        (f"start[{i}].{name}", f"not a parameter of this space (parameters: {', '.join(params)})")
                    )
                elif not _allows(_range_for(params[name], entry), value):
                    problems.append((f"start[{i}].{name}", f"{value!r} is outside the parameter's range"))
        if problems:
            raise SpaceError(problems, source)
        return [dict(entry) for entry in start]

    @classmethod
    def from_dict(cls, raw: Any, source: str | None = None) -> SearchSpace:
        if not isinstance(raw, dict):
            raise SpaceError([("", "the file must hold a mapping with 'architecture' and 'training'")], source)
        problems = [
            (str(k), f"unknown key (allowed: {', '.join(TOP_LEVEL_KEYS)})") for k in raw if k not in TOP_LEVEL_KEYS
        ]
        if "architecture" not in raw:
            problems.append(("architecture", "missing: the space needs an architecture section"))
        for key in ("name", "description", "input"):
            if key in raw and not isinstance(raw[key], str):
                problems.append((key, "must be a string"))
        if problems:
            raise SpaceError(problems, source)
        return cls(
            raw["architecture"],
            raw.get("training") or {},
            name=raw.get("name", "custom"),
            description=raw.get("description", ""),
            task=raw.get("task"),
            input=raw.get("input"),
            start=raw.get("start"),
            source=source,
            compression=raw.get("compression"),
            pretrain=raw.get("pretrain"),
        )

    def for_data(self, unlabeled: bool) -> SearchSpace:
        """The space a search on this data uses. Without unlabeled samples the `pretrain:` stage is
        left out. With them it is searched, and the first start configuration pretrains (SimCLR,
        the section's other defaults) unless it says otherwise; a space without the stage refuses."""
        space = copy.copy(self)
        space.raw = {k: v for k, v in self.raw.items() if k != "pretrain"}
        space.pretraining = False
        if not unlabeled:
            return space
        method = self.pretrain.items.get("method")
        if method is None or not any(m != "none" for m in _values(method)):
            raise SpaceError(
                [("pretrain.method", "unlabeled data was given, but this space never pretrains (method: simclr)")],
                self.source,
            )
        space.raw["pretrain"], space.pretraining = self.pretrain_raw, True
        if self.start and "pretrain.method" not in self.start[0] and isinstance(method, Categorical):
            space.start = [{**self.start[0], "pretrain.method": "simclr"}, *self.start[1:]]
        return space

    def sample(self, trial) -> Configuration:
        """Sample every active parameter from an Optuna trial (or `optuna.trial.FixedTrial`)."""
        flat: dict[str, Any] = {}
        arch = _sample(self.architecture, trial, "", {}, flat)
        training = _sample(self.training, trial, "", {}, flat)
        compression = _sample(self.compression, trial, "compression", {}, flat)
        pretrain = _sample(self.pretrain, trial, "pretrain", {}, flat) if self.pretraining else {}
        return Configuration(arch, training, params=flat, compression=compression, pretrain=pretrain)

    def parameters(self, every_section: bool = False) -> dict[str, Any]:
        """Every searchable parameter by flat name (repeat items up to the largest count); the
        `pretrain:` stage's only while it is searched (or with `every_section`)."""
        out: dict[str, Any] = {}

        def walk(node, flat: str):
            if isinstance(node, Group):
                for key, child in node.items.items():
                    walk(child, f"{flat}.{key}" if flat else key)
            elif isinstance(node, Repeat):
                if isinstance(node.count, Int):
                    out[_count_name(flat)], top = node.count, node.count.high
                else:
                    top = node.count
                for i in range(top):
                    walk(node.each, f"{flat}.{i}")
            elif not isinstance(node, Fixed):
                out[flat] = node

        walk(self.architecture, "")
        walk(self.training, "")
        walk(self.compression, "compression")
        if self.pretraining or every_section:
            walk(self.pretrain, "pretrain")
        return out

    def fingerprint(self) -> str:
        """Stable hash of the space, stored with a study so a changed space is caught on resume."""
        text = json.dumps(self.raw, sort_keys=True, default=_jsonable)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __repr__(self):
        return f"SearchSpace(name={self.name!r}, source={self.source!r})"


def _jsonable(obj):
    if isinstance(obj, BaseModel):
        return obj.model_dump()
    if isinstance(obj, (Group, Repeat)):
        return obj.__dict__
    return str(obj)


def iter_groups(group: Group, path: str = "architecture"):
    """Yield (path, group) for every group in the tree, descending into repeats."""
    yield path, group
    for key, child in group.items.items():
        if isinstance(child, Group):
            yield from iter_groups(child, f"{path}.{key}")
        elif isinstance(child, Repeat):
            yield from iter_groups(child.each, f"{path}.{key}.each")


def _values(param) -> list:
    """The values a flat-section parameter can take (its ends, for a range)."""
    if isinstance(param, Fixed):
        return [param.value]
    if isinstance(param, Categorical):
        return list(param.choices)
    return []


def _range_for(param, entry: dict):
    """A one_of's alternative that a start configuration selects (when it names every parameter the
    conditions read); otherwise the parameter itself."""
    if not isinstance(param, OneOf):
        return param
    names = {n for alt in param.one_of for n in (alt.when or {})}
    if not names <= set(entry):
        return param
    return param.pick(lambda when: all(condition_holds(e, entry[n]) for n, e in when.items())) or param


def _allows(param, value) -> bool:
    """Whether a start configuration's value is one the parameter can take."""
    if isinstance(param, OneOf):  # some alternative's range (the conditions are checked by the sampling)
        return any(_allows(alt, value) for alt in param.one_of)
    if isinstance(param, Categorical):
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in param.choices)
    if isinstance(param, Bool):
        return isinstance(value, bool)
    if isinstance(param, Int):
        return isinstance(value, int) and not isinstance(value, bool) and param.low <= value <= param.high
    if isinstance(param, Float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and param.low <= value <= param.high
    return True
