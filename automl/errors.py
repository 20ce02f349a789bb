"""The public errors, in one place: each says which input, file, key or setting is at fault.

The CLI turns any of them into one `error:` line and exit code 2. `SpaceError` lives with the
search-space language (which imports nothing else of automl) and is re-exported here.
"""

from __future__ import annotations

from .space.space import SpaceError


class DataError(ValueError):
    """Input that cannot be searched on; the message names the input and what is wrong."""


class StoreError(RuntimeError):
    """A storage or tracking location that cannot be used."""


class SearchError(ValueError):
    """Settings that cannot run (a study made with another space or data, a bad objective...)."""


class ClusterError(SearchError):
    """Ray is missing, or the cluster address cannot be reached (automl.cluster)."""


class NoCompleteTrial(SearchError):
    """A search that ended without a single complete trial: its result is no answer. `result` still
    holds the study (failed trials and their reasons); the CLI exits with code 1."""

    def __init__(self, study_name: str, last_reason: str, result=None):
        super().__init__(f"study {study_name!r} has no complete trial; last failure: {last_reason}")
        self.result = result


class HyperModelError(SearchError):
    """A hypermodel or KerasTuner setting that cannot run; raised before any trial."""


class ObjectiveError(ValueError):
    """An objective or constraint that cannot be measured or parsed."""


class StrategyError(ValueError):
    """A sampler or pruner that cannot run with these settings."""


class ExportError(ValueError):
    """Export settings or inputs that cannot work; says which argument, file or shape is at fault."""


class TrialFailed(RuntimeError):
    """A trial that produced no usable result (e.g. a NaN loss); the search goes on."""


USAGE_ERRORS = (SpaceError, DataError, StoreError, SearchError, ObjectiveError, StrategyError, ExportError)

__all__ = [
    "USAGE_ERRORS",
    "DataError",
    "ExportError",
    "HyperModelError",
    "NoCompleteTrial",
    "ObjectiveError",
    "SearchError",
    "SpaceError",
    "StoreError",
    "StrategyError",
    "TrialFailed",
]
