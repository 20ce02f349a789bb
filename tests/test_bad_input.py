"""Bad input never loses data: each mistake gets one clear `error:` line and exit code 2, and the
study and MLflow runs that already exist are left exactly as they were. README's table of bad
inputs lists these cases."""

import sqlite3

import numpy as np
import optuna
import pytest
from conftest import mlflow_runs
from test_cli import run

MLP = (
    "name: mlp\narchitecture:\n  hidden: {block: dense, units: [8, 16]}\n"
    "training:\n  learning_rate: {type: float, low: 0.001, high: 0.03, log: true}\n"
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-trial study in the embedded store, to be kept intact."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "mlp.yaml").write_text(MLP)
    (tmp / "other.yaml").write_text(MLP.replace("[8, 16]", "[4, 32]"))
    (tmp / "unknown_block.yaml").write_text(MLP.replace("dense", "nosuch"))
    (tmp / "bad_yaml.yaml").write_text("architecture: [unclosed\n")
    (tmp / "bad_compression.yaml").write_text(MLP + "compression:\n  qat: [false, true]\n  sparsity: 1.5\n")
    (tmp / "bad_pretrain.yaml").write_text(MLP + "pretrain:\n  method: [none, byol]\n")
    (tmp / "cnn.yaml").write_text(
        "name: cnn\narchitecture:\n  conv: {block: conv, filters: 4}\ntraining:\n  learning_rate: 0.01\n"
    )
    np.savez(tmp / "unlabeled_9x9.npz", x=np.zeros((10, 9, 9)))
    np.savez(tmp / "unlabeled_8x8.npz", x=np.zeros((10, 8, 8)))
    np.savez(tmp / "mismatch.npz", x=np.zeros((10, 3)), y=np.zeros(9, int))
    np.savez(tmp / "empty.npz", x=np.zeros((0, 3)), y=np.zeros(0, int))
    (tmp / "empty.csv").write_text("")
    np.savez(
        tmp / "labels.npz",
        x=np.zeros((10, 3)),
        y=np.arange(10) % 2,
        x_val=np.zeros((4, 3)),
        y_val=np.array([0, 1, 2, 7]),
    )
    result = run(["search", "mlp.yaml", "--data", "wine", "--trials", "2", "--epochs", "1", "--study", "keep"], tmp)
    assert result.returncode == 0, result.stderr
    return tmp


def _snapshot(tmp):
    from automl.stores import open_storage

    storage = open_storage(str(tmp / "mlruns" / "optuna.journal"))
    studies = {
        s.study_name: [
            (t.number, t.state, t.value) for t in optuna.load_study(study_name=s.study_name, storage=storage).trials
        ]
        for s in optuna.get_all_study_summaries(storage)
    }
    client, runs = mlflow_runs(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    experiments = sorted(e.name for e in client.search_experiments())  # no empty experiment left behind
    return studies, experiments, sorted((r.info.run_id, r.info.status) for r in runs)


CASES = [
    (["search", "unknown_block.yaml", "--data", "wine"], "architecture.hidden.block: unknown block 'nosuch'"),
    (["search", "bad_yaml.yaml", "--data", "wine"], "not valid YAML"),
    (["search", "mlp.yaml", "--data", "mismatch.npz"], "x has 10 samples but y has 9"),
    (["search", "mlp.yaml", "--data", "empty.npz"], "x is empty"),
    (["search", "mlp.yaml", "--data", "empty.csv", "--target", "y"], "empty.csv: the file is empty"),
    (["search", "mlp.yaml", "--data", "labels.npz"], "validation labels [2, 7] do not occur"),
    (["search", "image_cnn", "--data", "wine"], "the space is for image input but the data is tabular"),
    (["search", "other.yaml", "--data", "wine", "--study", "keep"], "was run with a different space"),
    (
        ["search", "mlp.yaml", "--data", "wine", "--storage", "postgresql://nobody:x@127.0.0.1:1/none"],
        "cannot open Optuna storage",
    ),
    (
        [
            "search",
            "mlp.yaml",
            "--data",
            "wine",
            "--storage",
            "postgresql://nobody:x@127.0.0.1:1/none",
            "--study",
            "fresh",
        ],
        "cannot open Optuna storage",
    ),  # a new study's experiment is not created either
    (
        ["search", "mlp.yaml", "--data", "wine", "--tracking-uri", "http://127.0.0.1:1"],
        "cannot reach the MLflow tracking server",
    ),
    (["search", "mlp.yaml", "--data", "wine", "--epochs", "0"], "epochs must be at least 1"),
    (["search", "bad_compression.yaml", "--data", "wine"], "compression.sparsity: must be a number in [0, 0.99]"),
    (["export", "--study", "keep", "--out", "exp", "--prune", "1.5"], "--prune: must be a number in [0, 0.99]"),
    (["search", "bad_pretrain.yaml", "--data", "wine"], "pretrain.method: must be one of none, simclr, not 'byol'"),
    (
        ["search", "image_cnn", "--data", "digits", "--unlabeled", "unlabeled_9x9.npz"],
        "unlabeled data: x has shape (9, 9, 1) per sample, the training x has (8, 8, 1)",
    ),
    (
        ["search", "mlp.yaml", "--data", "wine", "--unlabeled", "unlabeled_8x8.npz"],
        "unlabeled data: pretraining on unlabeled samples exists for image and sequence inputs",
    ),
    (["search", "image_cnn", "--data", "digits", "--unlabeled", "nothing.npz"], "unlabeled data: 'nothing.npz'"),
    (["search", "cnn.yaml", "--data", "digits", "--unlabeled", "unlabeled_8x8.npz"], "this space never pretrains"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_keeps_the_study(finished, args, message):
    before = _snapshot(finished)
    result = run(args, finished, timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert _snapshot(finished) == before


def test_locked_database_is_a_clear_error(finished):
    db = finished / "locked.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE hold (x)")
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        result = run(["search", "mlp.yaml", "--data", "wine", "--storage", f"sqlite:///{db}"], finished, timeout=180)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot open Optuna storage" in result.stderr and "locked" in result.stderr
