"""Shared fixtures: tiny real data, a tiny space, and private Optuna/MLflow stores per test."""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def digits_small():
    """300 of scikit-learn's bundled 8x8 digits: real images, trains in a second."""
    from automl.data import load_builtin, make_dataset

    x, y, kind = load_builtin("digits")
    return make_dataset(x[:300], y[:300], kind=kind, name="digits300", seed=0)


@pytest.fixture
def stores(tmp_path):
    """A fresh journal storage and SQLite MLflow store for one test."""
    return {"storage": str(tmp_path / "optuna.journal"), "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}


@pytest.fixture
def tiny_space():
    from automl.space import Categorical, Float, Int, SearchSpace

    return SearchSpace(
        name="tiny",
        architecture={
            "blocks": {"repeat": Int(low=1, high=2),
                       "each": {"block": "conv", "filters": Int(low=4, high=8), "kernel_size": 3,
                                "pooling": Categorical(choices=["max", "avg"])}},
            "pool": {"block": "global_pool", "mode": Categorical(choices=["avg", "max"])},
        },
        training={"optimizer": Categorical(choices=["adam", "sgd"]),
                  "momentum": Float(low=0.8, high=0.95, when={"optimizer": "sgd"}),
                  "learning_rate": Float(low=3e-3, high=3e-2, log=True), "batch_size": 64},
    )


def mlflow_runs(tracking_uri):
    """All runs of all experiments, as MLflow serves them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(exps, max_results=1000)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
