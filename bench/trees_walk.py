"""What a feature-cache miss of a boosted-trees table model costs: the trees' outputs on the training
and validation rows taken from scikit-learn's walk at fit time (automl/blocks/trees.py `raw_scores`)
vs walking them in the Keras layer (before). Both ways alternate on the same fitted trees, in one
process, on the suite's table tasks; the other fixed layers' outputs are computed by Keras in both.

    .venv/bin/python bench/trees_walk.py                      # california_housing, wine_quality, bank_marketing
    .venv/bin/python bench/trees_walk.py --tasks wine --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from header import print_header
from suite_tasks import TASKS, load

import automl.feature_cache as feature_cache
from automl.builder import build_model
from automl.data import make_dataset

SETTINGS = ((31, 0.1, "piecewise_linear"), (60, 0.0931468, "periodic"))  # the shipped start list's trees


def miss_seconds(model, data, sklearn: bool) -> float:
    """One cache miss (an empty cache), timed; `sklearn=False` hides the fit-time scores."""
    known = feature_cache.known_scores
    feature_cache.known_scores = known if sklearn else (lambda data, layer: None)
    try:
        started = time.perf_counter()
        assert feature_cache.FeatureCache(data).split(model) is not None
        return time.perf_counter() - started
    finally:
        feature_cache.known_scores = known


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="california_housing,wine_quality,bank_marketing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print_header()
    print(f"{'task':<20} {'rows':>5} {'trees':>5}  {'scikit-learn s':>14}  {'Keras walk s':>12}  speed-up")
    for task in args.tasks.split(","):
        splits = load(task)
        (x, y), (x_val, y_val) = splits["train"], splits["val"]
        data = make_dataset(x, y, validation_data=(x_val, y_val), task=TASKS[task].task)
        for leaves, rate, numeric in SETTINGS:
            columns = {"block": "tabular", "trees": "boosted", "trees_leaves": leaves, "trees_learning_rate": rate}
            model = build_model({"c": {**columns, "numeric": numeric}, "h": {"block": "dense", "units": 32}}, data)
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.repeats):
                for sklearn in (False, True):
                    times[sklearn].append(miss_seconds(model, data, sklearn))
            new, old = statistics.median(times[True]), statistics.median(times[False])
            rows = len(data.y_train) + len(data.y_val)
            trees = model.get_layer("trees").trees
            print(f"{task:<20} {rows:>5} {trees:>5}  {new:>14.2f}  {old:>12.2f}  {old / new:.1f}x")


if __name__ == "__main__":
    main()
