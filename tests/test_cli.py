"""The `automl` command as a user runs it: a real subprocess each time."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

AUTOML = [sys.executable, "-m", "automl.cli"]


def run(args, cwd, timeout=300):
    env = {**os.environ, "AUTOML_HOME": str(Path(cwd) / "mlruns")}
    return subprocess.run([*AUTOML, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_help_does_not_import_tensorflow(tmp_path):
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom automl.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "assert 'search' in r.output\n"
        "r = CliRunner().invoke(app, ['search', '--help'])\nassert '--tracking-uri' in r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'mlflow')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One finished CLI search in a fresh working directory (the embedded default store)."""
    tmp_path = tmp_path_factory.mktemp("cli")
    space = tmp_path / "mlp.yaml"
    space.write_text(
        "name: mlp\narchitecture:\n  hidden: {block: dense, units: [8, 16]}\n"
        "training:\n  learning_rate: {type: float, low: 0.001, high: 0.03, log: true}\n"
    )
    result = run(
        ["search", str(space), "--data", "wine", "--trials", "2", "--epochs", "2", "--seed", "0", "--study", "cli"],
        tmp_path,
    )
    return tmp_path, space, result


ABSL_LINE = re.compile(r"^([IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] |WARNING: All log messages before absl)", re.M)


def test_search_then_trials_on_the_embedded_store(searched):
    tmp_path, space, result = searched
    assert result.returncode == 0, result.stderr
    assert "cli: val_accuracy (maximize)" in result.stdout and "COMPLETE" in result.stdout
    assert "automl ui --study cli" in result.stderr and "automl trials --study cli" in result.stderr
    assert "automl predict --study cli --data NEW_FILE" in result.stderr
    assert not ABSL_LINE.search(result.stderr), "TensorFlow's start-up INFO lines are hidden without --verbose"
    assert (tmp_path / "mlruns" / "optuna.journal").exists() and (tmp_path / "mlruns" / "mlflow.db").exists()
    assert list((tmp_path / "mlruns" / "artifacts").rglob("model.keras"))
    board = run(["trials", "--study", "cli", "--csv", str(tmp_path / "t.csv")], tmp_path)
    assert board.returncode == 0, board.stderr
    assert board.stdout.count("COMPLETE") == 2
    assert (tmp_path / "t.csv").read_text().startswith("trial,state,value")
    # same command again: the study is complete, nothing is added
    again = run(
        [
            "search",
            str(space),
            "--data",
            "wine",
            "--trials",
            "2",
            "--epochs",
            "2",
            "--study",
            "cli",
            "--quiet",
            "--verbose",
        ],
        tmp_path,
    )
    assert again.returncode == 0 and again.stdout.count("COMPLETE") == 2
    assert ABSL_LINE.search(again.stderr), "--verbose shows what the default hides"


def test_predict_reads_new_rows_with_the_study_alone(searched):
    """`automl predict` needs only the study: a new process reads the recorded schema, loads the best
    trial's model (its custom layers registered) and writes one row per sample, labels as trained."""
    import pandas as pd
    from sklearn.datasets import load_wine

    tmp_path, _, result = searched
    assert result.returncode == 0, result.stderr
    x, _ = load_wine(return_X_y=True)
    rows = x[[0, 60, 150, 177]]
    pd.DataFrame(rows, columns=[f"f{i}" for i in range(13)]).to_csv(tmp_path / "new.csv", index=False)
    done = run(["predict", "--study", "cli", "--data", "new.csv", "--out", "predicted.csv"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "predicted 4 samples with trial" in done.stderr
    predicted = pd.read_csv(tmp_path / "predicted.csv")
    assert list(predicted.columns) == ["prediction", "p_0", "p_1", "p_2"]
    # the same model in this process, through the Python API
    import automl

    stored = automl.load_result(
        "cli",
        storage=str(tmp_path / "mlruns" / "optuna.journal"),
        tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db",
    )
    expected = stored.best_model().predict(rows.astype("float32"), verbose=0)
    assert np.allclose(predicted[["p_0", "p_1", "p_2"]].to_numpy(), expected, atol=1e-5)
    assert list(predicted.prediction) == list(expected.argmax(axis=1))
    # --target: the file's true labels are left out of the inputs and the predictions scored against them
    labels = load_wine(return_X_y=True)[1][[0, 60, 150, 177]]
    labelled = pd.DataFrame(rows, columns=[f"f{i}" for i in range(13)]).assign(label=labels)
    labelled.to_csv(tmp_path / "test.csv", index=False)
    scored = run(["predict", "--study", "cli", "--data", "test.csv", "--target", "label"], tmp_path)
    assert scored.returncode == 0, scored.stderr
    accuracy = (expected.argmax(axis=1) == labels).mean()
    log_loss = -np.log(expected[np.arange(4), labels]).mean()
    assert f"accuracy {accuracy:.4g}, log_loss {log_loss:.4g}" in scored.stderr, scored.stderr
    assert scored.stdout == run(["predict", "--study", "cli", "--data", "new.csv"], tmp_path).stdout
    wrong = run(["predict", "--study", "cli", "--data", "test.csv", "--target", "quality"], tmp_path)
    assert wrong.returncode == 2 and "error: test.csv: no column 'quality'" in wrong.stderr
    np.savez(tmp_path / "new.npz", x=rows)  # an array x alone, no y
    from_npz = run(["predict", "--study", "cli", "--data", "new.npz"], tmp_path)
    assert from_npz.returncode == 0, from_npz.stderr
    assert [line.split(",")[0] for line in from_npz.stdout.splitlines()[1:]] == [str(p) for p in predicted.prediction]
    missing = run(["predict", "--study", "cli", "--data", "nothing.csv"], tmp_path)
    assert missing.returncode == 2 and "error: nothing.csv: no such file or folder" in missing.stderr
    typo = run(["predict", "--study", "clii", "--data", "new.csv"], tmp_path)
    assert typo.returncode == 2 and "error: no study 'clii' in the storage (studies: cli)" in typo.stderr
    # --trial N: that trial's model (trial 0's is always kept; a later one only while it was the best)
    for number in (0, 1):
        chosen = run(["predict", "--study", "cli", "--data", "new.csv", "--trial", str(number)], tmp_path)
        if not stored.study.trials[number].user_attrs.get("model_artifact"):
            assert chosen.returncode == 2 and "error: --trial 1: trial 1 has no saved model" in chosen.stderr
            continue
        assert chosen.returncode == 0, chosen.stderr
        assert f"predicted 4 samples with trial {number}" in chosen.stderr
        lines = chosen.stdout.splitlines()[1:]
        probabilities = np.array([[float(v) for v in line.split(",")[1:]] for line in lines])
        mine = stored.trial_model(number).predict(rows.astype("float32"), verbose=0)
        assert np.allclose(probabilities, mine, atol=1e-5)
        assert np.allclose(mine, expected, atol=1e-3) == (number == stored.best_trial.number)
    absent = run(["predict", "--study", "cli", "--data", "new.csv", "--trial", "7"], tmp_path)
    assert absent.returncode == 2 and "error: --trial 7: study 'cli' has no trial 7 (trials 0-1)" in absent.stderr


def test_check_names_the_problems_of_a_csv_and_of_an_image_folder(tmp_path):
    """`automl check`: a row number given after sorting by label is an identifier that leaks, a
    constant column carries nothing (the report files say so too); in a folder of images a copy is a
    duplicate, and TensorFlow's start-up lines stay off the terminal."""
    import json

    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    label = np.sort(rng.integers(0, 2, 1000))
    table = pd.DataFrame({"row": np.arange(1000), "x": rng.normal(size=1000), "unit": 1.0, "label": label})
    table.to_csv(tmp_path / "sorted.csv", index=False)
    done = run(["check", "--data", "sorted.csv", "--target", "label", "--out", "reports"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "column 'row' alone predicts the validation target" in done.stdout
    assert "column 'unit' has one value" in done.stdout
    found = json.loads((tmp_path / "reports" / "data_report.json").read_text())["findings"]
    assert {"id_column", "leakage", "constant_column"} <= {f["check"] for f in found}
    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, (16, 16, 3)).astype("uint8")
            Image.fromarray(pixels).save(tmp_path / "images" / cls / f"{i}.png")
    copy = (tmp_path / "images" / "a" / "0.png").read_bytes()
    (tmp_path / "images" / "b" / "copy.png").write_bytes(copy)  # the same picture, another label
    pictures = run(["check", "--data", "images"], tmp_path)
    assert pictures.returncode == 0, pictures.stderr
    assert "exact copies" in pictures.stdout, pictures.stdout  # within training or across the split
    assert not ABSL_LINE.search(pictures.stderr), pictures.stderr


def test_the_leaderboard_leaves_queued_configurations_out_and_counts_them():
    """A search stopped by its timeout leaves start configurations queued (WAITING): rows of dashes
    in the table before; now a line says how many wait for a rerun."""
    import optuna

    from automl.console import out, print_leaderboard

    study = optuna.create_study(study_name="queued", direction="minimize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.25))
    for lr in (0.1, 0.01):
        study.enqueue_trial({"lr": lr})
    with out.capture() as captured:
        print_leaderboard(study, 10)
    text = captured.get()
    assert "COMPLETE" in text and "WAITING" not in text
    assert "2 queued configuration(s) not tried yet" in text


def test_predict_scores_a_regression_in_the_targets_units():
    """`automl predict --target` on a regression: RMSE and MAE in the target's units, R² against the
    scored rows' mean, as scikit-learn computes them."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    from automl.cli_predict import scored

    rng = np.random.default_rng(0)
    truth = rng.normal(100, 20, 50)
    guess = truth + rng.normal(3, 5, 50)
    got = scored("regression", guess[:, None].astype("float32"), truth)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, guess)), rel=1e-5)
    assert got["mae"] == pytest.approx(mean_absolute_error(truth, guess), rel=1e-5)
    assert got["r2"] == pytest.approx(r2_score(truth, guess), rel=1e-5)


def test_search_without_a_space_takes_the_task_classes_defaults(tmp_path):
    """`automl search --data X` with no SPACE searches as the task classes do (what bench/suite.py
    measures): the kind's space, val_loss, epochs by training-set size, the budget schedule (its
    low-fidelity trials) and an ensemble that `automl predict` then uses."""
    import optuna
    from sklearn.datasets import load_wine

    from automl import records
    from automl.stores import open_storage
    from automl.tasks import default_epochs

    done = run(["search", "--data", "wine", "--timeout", "25", "--seed", "0"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "tabular-wine: val_loss (minimize)" in done.stdout
    journal = str(tmp_path / "mlruns" / "optuna.journal")
    study = optuna.load_study(study_name="tabular-wine", storage=open_storage(journal))
    settings = records.SearchSettings.of(study)
    assert settings.space_name == "tabular_mlp" and settings.epochs == default_epochs(settings.train_samples) > 10
    assert any(t.user_attrs.get(records.FIDELITY, 1.0) < 1.0 for t in study.trials), "no low-fidelity trial"
    assert "fidelity" in done.stdout  # the leaderboard's column that explains why short trials rank last
    assert "val_accuracy" in done.stdout  # how good, beside the val_loss objective: at the same epoch
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all(t.user_attrs[records.VAL_METRICS]["val_loss"] == pytest.approx(t.value) for t in complete)
    assert all(0 <= t.user_attrs[records.VAL_METRICS]["val_accuracy"] <= 1 for t in complete)
    from conftest import mlflow_runs

    _, runs = mlflow_runs(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    search_run = next(r for r in runs if r.data.tags.get("automl.role") == "search")
    assert search_run.data.params["sampler"] == "tpe-random" and search_run.data.params["schedule"] == "budget"
    assert "ensemble" in done.stderr
    x, _ = load_wine(return_X_y=True)
    np.savez(tmp_path / "new.npz", x=x[:5])
    predicted = run(["predict", "--study", "tabular-wine", "--data", "new.npz"], tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert re.search(
        r"predicted 5 samples with (the ensemble of trials|trial \d+ \(the ensemble's choice)", predicted.stderr
    )


def test_a_csv_of_texts_searched_and_predicted_from_the_command_line(tmp_path):
    """A `review,label` CSV trains a text space from the command line, and a CSV of new reviews (one
    column, no --column needed) predicts as the best model does in Python."""
    import pandas as pd

    import automl

    reviews = [f"win a free prize now {i} claim cash" for i in range(20)]
    reviews += [f"see you at lunch, day {i}, with the team" for i in range(20)]
    labels = ["spam"] * 20 + ["ham"] * 20
    pd.DataFrame({"review": reviews, "label": labels}).to_csv(tmp_path / "reviews.csv", index=False)
    args = ["search", "text_cnn_rnn", "--data", "reviews.csv", "--target", "label", "--trials", "2", "--epochs", "3"]
    done = run([*args, "--seed", "0", "--study", "reviews"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "text input" in done.stderr and "2 classes" in done.stderr
    new = ["claim your free prize, win cash", "lunch with the team"]
    pd.DataFrame({"review": new}).to_csv(tmp_path / "new.csv", index=False)
    predicted = run(["predict", "--study", "reviews", "--data", "new.csv"], tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.splitlines()
    assert lines[0] == "prediction,p_ham,p_spam" and len(lines) == 3
    home = tmp_path / "mlruns"
    stored = automl.load_result("reviews", str(home / "optuna.journal"), f"sqlite:///{home}/mlflow.db")
    expected = stored.best_model().predict(np.array(new, dtype=object), verbose=0)
    assert np.allclose([[float(v) for v in line.split(",")[1:]] for line in lines[1:]], expected, atol=1e-5)
    # a CSV of several columns: --column names the texts; an empty cell is an empty text
    pd.DataFrame({"id": [7, 8, 9], "review": [*new, None]}).to_csv(tmp_path / "two.csv", index=False)
    chosen = run(["predict", "--study", "reviews", "--data", "two.csv", "--column", "review"], tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    rows = [[float(v) for v in line.split(",")[1:]] for line in chosen.stdout.splitlines()[1:]]
    assert np.allclose(rows[:2], expected, atol=1e-5) and len(rows) == 3
    unnamed = run(["predict", "--study", "reviews", "--data", "two.csv"], tmp_path)
    assert unnamed.returncode == 2 and "name the text column (automl predict --column NAME)" in unnamed.stderr


def test_a_csv_table_with_a_text_column_exports_and_reports_in_a_new_process(tmp_path):
    """A table's model names automl's own layers (NumericColumns): `automl export` and `automl report`,
    each a fresh process, load it (export failed with "Could not locate class 'NumericColumns'"), and
    the exported `.keras` file predicts as the best model does."""
    import pandas as pd

    import automl

    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    table = pd.DataFrame(
        {
            "note": [
                f"{'arrived fast, works great' if v else 'broke after a week'} order {i}" for i, v in enumerate(y)
            ],
            "price": rng.normal(50, 10, 60),
            "colour": rng.choice(["red", "blue"], 60),
            "label": np.where(y == 1, "good", "bad"),
        }
    )
    table.to_csv(tmp_path / "orders.csv", index=False)
    data = ["--data", "orders.csv", "--target", "label"]
    done = run(
        ["search", "tabular_mlp", *data, "--trials", "2", "--epochs", "3", "--seed", "0", "--study", "orders"], tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "1 numeric + 1 categorical + 1 text columns" in done.stderr
    exported = run(
        ["export", "--study", "orders", "--out", "out", *data, "--formats", "keras", "--seed", "0"], tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    home = tmp_path / "mlruns"
    stored = automl.load_result("orders", str(home / "optuna.journal"), f"sqlite:///{home}/mlflow.db")
    from automl.data import Dataset, model_inputs
    from automl.saved import load_model

    schema = Dataset.from_schema(stored.study.user_attrs["data_schema"])
    inputs = model_inputs(schema, table.drop(columns="label").head(8))
    np.testing.assert_allclose(
        load_model(tmp_path / "out" / "model.keras").predict(inputs, verbose=0),
        stored.best_model().predict(inputs, verbose=0),
        atol=1e-5,
    )
    reported = run(["report", "--study", "orders", "--out", "report.html"], tmp_path)
    assert reported.returncode == 0, reported.stderr
    assert "NumericColumns" in (tmp_path / "report.html").read_text()  # the best model's architecture


def test_task_regression_on_class_numbers_is_searched_and_exported_as_a_regression(tmp_path):
    """`--task regression` makes three whole-number grades numbers to predict; `automl export` in a new
    process reads the data as the study recorded (a regression, the same fingerprint), not as the
    classes the target alone would suggest."""
    import optuna
    import pandas as pd

    from automl import records
    from automl.stores import open_storage

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    grade = np.clip(np.round(x[:, 0] + 1), 0, 2).astype(int)
    pd.DataFrame(x, columns=["a", "b", "c"]).assign(grade=grade).to_csv(tmp_path / "grades.csv", index=False)
    data = ["--data", "grades.csv", "--target", "grade"]
    args = ["search", "tabular_mlp", *data, "--task", "regression", "--trials", "2", "--epochs", "2", "--seed", "0"]
    done = run([*args, "--study", "grades"], tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="grades", storage=open_storage(str(tmp_path / "mlruns" / "optuna.journal")))
    assert study.user_attrs[records.DATA_SCHEMA]["task"] == "regression"
    assert "val_loss (minimize)" in done.stdout
    exported = run(
        ["export", "--study", "grades", "--out", "out", *data, "--formats", "keras", "--seed", "0"], tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    wrong = run(["search", *data, "--task", "ranking", "--trials", "1"], tmp_path)
    assert wrong.returncode == 2 and "task must be one of" in wrong.stderr


def test_predict_a_text_model_with_its_ensemble(tmp_path):
    """A task class's study: `automl predict` uses the ensemble recorded on it, as `clf.predict` does."""
    import automl

    spam = [f"win a free prize now {i} claim cash" for i in range(30)]
    ham = [f"see you at lunch on day {i} with the team" for i in range(30)]
    home = tmp_path / "mlruns"
    clf = automl.TextClassifier(
        max_trials=3,
        epochs=5,
        seed=0,
        verbose=False,
        study_name="texts",
        storage=str(home / "optuna.journal"),
        tracking_uri=f"sqlite:///{home}/mlflow.db",
    )
    clf.fit(spam + ham, ["spam"] * 30 + ["ham"] * 30, validation_split=0.25)
    clf.model()  # chooses and records the ensemble, as predict does
    new = ["claim your free prize", "lunch with the team tomorrow", "free cash"]
    (tmp_path / "new.txt").write_text("\n".join(new) + "\n\n")
    done = run(["predict", "--study", "texts", "--data", "new.txt"], tmp_path)
    assert done.returncode == 0, done.stderr
    chosen = clf.model_info["members"]
    members = ", ".join(f"{n} x{w:.2f}" for n, w in zip(chosen, clf.model_info["weights"]))
    assert (f"the ensemble of trials {members}" if len(chosen) > 1 else f"trial {chosen[0]} (the ensemble's") in (
        done.stderr
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "prediction,p_ham,p_spam" and len(lines) == 4
    assert [line.split(",")[0] for line in lines[1:]] == list(clf.predict(new))
    probabilities = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert np.allclose(probabilities, clf.predict_proba(new), atol=1e-5)


def _pictures(folder: Path, rng, bright: bool, n: int, prefix: str = ""):
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = rng.integers(10, 20, 2)
        pixels = rng.integers(170, 256, (h, w, 3)) if bright else rng.integers(0, 80, (h, w, 3))
        (folder / f"{prefix}{i}.png").write_bytes(tf.io.encode_png(pixels.astype(np.uint8)).numpy())


def test_a_folder_of_images_of_many_sizes_searched_and_predicted_from_the_command_line(tmp_path):
    """`--image-size` resizes a folder whose images differ in size (the error says so), and `automl
    predict` reads new image files of any size, one row per file, sorted by path."""
    rng = np.random.default_rng(0)
    _pictures(tmp_path / "train" / "day", rng, True, 40)
    _pictures(tmp_path / "train" / "night", rng, False, 40)
    _pictures(tmp_path / "new", rng, True, 2, "day")
    _pictures(tmp_path / "new", rng, False, 2, "night")
    search = ["search", "image_cnn", "--data", "train", "--trials", "1", "--epochs", "20", "--seed", "0"]
    refused = run(search, tmp_path)
    assert refused.returncode == 2 and "--image-size HxW" in refused.stderr
    bad = run([*search, "--image-size", "16"], tmp_path)
    assert bad.returncode == 2 and "error: --image-size '16': expected HEIGHTxWIDTH" in bad.stderr
    done = run([*search, "--image-size", "16x16", "--quiet"], tmp_path)
    assert done.returncode == 0, done.stderr
    predicted = run(["predict", "--study", "image_cnn-train", "--data", "new"], tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    rows = [line.split(",") for line in predicted.stdout.splitlines()]
    assert rows[0] == ["file", "prediction", "p_day", "p_night"]
    assert [(Path(r[0]).name, r[1]) for r in rows[1:]] == [
        ("day0.png", "day"),
        ("day1.png", "day"),
        ("night0.png", "night"),
        ("night1.png", "night"),
    ]


def test_tensorflow_retracing_advice_is_kept_off_the_terminal():
    """Every trial predicts with new models, and TensorFlow advises each time that tracing is expensive:
    advice for the code that loops (automl's), noise to a user. Importing automl drops it (trial
    workers import it too); TensorFlow's other warnings still show."""
    advice = "5 out of the last 5 calls to <function f at 0x7f> triggered tf.function retracing. Tracing is expensive"
    code = (
        "import logging, sys\n"
        "logging.basicConfig()\n"
        "tf = logging.getLogger('tensorflow')\n"
        "import automl\n"
        "tf.warning(sys.argv[1])\n"
        "tf.warning('an other warning')\n"
    )
    done = subprocess.run([sys.executable, "-c", code, advice], capture_output=True, text=True, check=True)
    assert done.stderr == "WARNING:tensorflow:an other warning\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "missing.yaml", "--data", "digits"], "missing.yaml: <top>: file not found"),
        (["search", "BAD", "--data", "digits"], "BAD.yaml: architecture.blocks.each.filters.low"),
        (["search", "image_cnn", "--data", "nope.csv"], "nope.csv: not a built-in data set"),
        (["search", "image_cnn", "--data", "digits", "--sampler", "grid-ish"], "unknown sampler 'grid-ish'"),
        (["search", "image_cnn", "--data", "digits", "--schedule", "fast"], "schedule must be one of full, budget"),
        (["export", "--study", "s", "--out", "o", "--ensemble", "--pareto"], "--ensemble cannot be combined"),
        (["trials", "--study", "nothing-here"], "no study 'nothing-here'"),
        (["ui", "--tracking-uri", "sqlite:///nowhere/mlflow.db"], "no MLflow store here"),
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_code_2(tmp_path, args, message):
    (tmp_path / "BAD.yaml").write_text(
        "architecture:\n  blocks:\n    repeat: 2\n    each:\n"
        "      block: conv\n      filters: {type: int, low: many, high: 3}\n"
    )
    args = [str(tmp_path / "BAD.yaml") if a == "BAD" else a for a in args]
    result = run(args, tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_spaces_lists_shipped_spaces(tmp_path):
    result = run(["spaces"], tmp_path)
    assert result.returncode == 0 and "image_cnn" in result.stdout and "tabular_mlp" in result.stdout


def _while_serving(args, cwd, probe_url, then, ready="", timeout=90):
    """Start `automl ARGS` (a server), poll `probe_url` until it answers JSON and stderr has a `ready`
    line, and return `then(that JSON)` (run while it serves) and its stderr. It is stopped as `kill`
    would (SIGTERM to the automl process alone), and must take every process it started with it."""
    import json
    import signal
    import threading
    import time
    import urllib.request

    import psutil

    env = {**os.environ, "AUTOML_HOME": str(Path(cwd) / "mlruns")}
    proc = subprocess.Popen(
        [*AUTOML, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read_stderr():
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(probe_url, timeout=5) as r:
                    first = json.load(r)
                if not ready or any(ready in line for line in lines):
                    break
            except OSError:
                pass
            assert proc.poll() is None, "".join(lines)
            assert time.time() < deadline, f"automl {args[0]} did not come up: {''.join(lines)[-2000:]}"
            time.sleep(1)
        answer = then(first)
    finally:
        try:
            started = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        left = _still_running(started)
        for p in left:  # so that a failing test leaves nothing behind either
            p.kill()
    assert not left, f"still running after SIGTERM to automl {args[0]}: {[p.pid for p in left]}"
    return answer, "".join(lines)


def _still_running(processes, wait: float = 5.0):
    """The processes among `processes` still alive after up to `wait` s (a zombie is not alive)."""
    import time

    import psutil

    def alive(p):
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + wait
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in processes if alive(p)]


@pytest.fixture(scope="module")
def older_experiment(searched):
    """An experiment made after the search's whose one run started earlier (2020): `automl ui` must pick
    the search's experiment (latest run) by default, and this one when asked by --study."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{searched[0] / 'mlruns' / 'mlflow.db'}")
    experiment_id = client.create_experiment("older")
    client.create_run(experiment_id, start_time=1_577_836_800_000)
    return experiment_id


def test_ui_serves_the_search_prints_its_runs_table_and_stops_whole(searched, older_experiment):
    """SIGTERM to `automl ui` stops the MLflow server and its ~9 workers (checked in _while_serving)."""
    import json
    import urllib.request

    from conftest import free_port

    tmp_path, _, _ = searched
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"

    def search_runs(found):
        experiment_id = found["experiment"]["experiment_id"]
        body = json.dumps({"experiment_ids": [experiment_id]}).encode()
        request = urllib.request.Request(f"{base}/runs/search", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            return experiment_id, json.load(r)["runs"]

    (experiment_id, runs), stderr = _while_serving(
        ["ui", "--port", str(port)],
        tmp_path,
        f"{base}/experiments/get-by-name?experiment_name=cli",
        search_runs,
        ready="MLflow UI:",
    )
    assert f"MLflow UI: http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs " in stderr
    assert experiment_id != older_experiment
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    parents = [t for t in tags if t.get("automl.role") == "search"]
    children = [t for t in tags if t.get("automl.role") == "trial"]
    assert len(parents) == 1 and len(children) == 2
    parent_id = next(r["info"]["run_id"] for r, t in zip(runs, tags) if t.get("automl.role") == "search")
    assert all(t["mlflow.parentRunId"] == parent_id for t in children)


def test_ui_binds_the_host_asked_for_and_prints_the_study_asked_for(searched, older_experiment):
    import socket

    from conftest import free_port

    tmp_path, _, _ = searched
    port = free_port()

    def refused_on_127_0_0_1(_):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False

    refused, stderr = _while_serving(
        ["ui", "--host", "127.0.0.2", "--port", str(port), "--study", "older"],
        tmp_path,
        f"http://127.0.0.2:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=older",
        refused_on_127_0_0_1,
        ready="MLflow UI:",
    )
    assert refused, "the server listens on --host only"
    assert f"MLflow UI: http://127.0.0.2:{port}/#/experiments/{older_experiment}/runs " in stderr


def test_dashboard_serves_the_study_storage(searched):
    """`automl dashboard` runs optuna-dashboard on the embedded journal; its API lists the study."""
    from conftest import free_port

    tmp_path, _, _ = searched
    missing = run(["dashboard", "--storage", str(tmp_path / "nothing.journal")], tmp_path)
    assert missing.returncode == 2 and "no Optuna journal file here" in missing.stderr
    port = free_port()
    studies, _ = _while_serving(
        ["dashboard", "--port", str(port)],
        tmp_path,
        f"http://127.0.0.1:{port}/api/studies",
        lambda found: found["study_summaries"],
        timeout=60,
    )
    assert [s["study_name"] for s in studies] == ["cli"]
