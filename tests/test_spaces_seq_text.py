"""Shipped sequence, text and table spaces: a sampled configuration builds on real tiny data, trains a
step, reloads identically and exports to TFLite (or fails for the documented reason); two-trial
searches on a text and a sequence space run end to end with MLflow."""

import keras
import numpy as np
import optuna
import pytest
from conftest import mlflow_runs
from seq_text_checks import (
    check_round_trip,
    sequence_data,
    sequences,
    table_data,
    text_data,
    tflite_convert,
    tflite_convert_batch1,
    tflite_predict,
)

from automl import Search
from automl.builder import build_model, validate_space
from automl.space import load_space

pytestmark = pytest.mark.filterwarnings("ignore:Layer 'conv1d")  # Conv1D drops the padding mask (documented)


@pytest.fixture(scope="module")
def datasets():
    from sklearn.datasets import load_breast_cancer

    from automl.data import make_dataset

    x, y = load_breast_cancer(return_X_y=True)
    return {
        "text": text_data(),
        "sequence": sequence_data(),
        "table": table_data(),
        "matrix": make_dataset(x[:120], y[:120], seed=0),
    }


# space -> (data, parameters fixed so the interesting parts are sampled; the rest is random)
CASES = {
    "sequence_rnn": ("sequence", {"encoder.block": "lstm", "encoder.bidirectional": False, "encoder.depth": 2}),
    "sequence_transformer": ("sequence", {}),
    "text_transformer": ("text", {"text.sequence_length": 32}),
    "sequence_rnn-flatten": ("sequence", {"encoder.block": "conv1d", "pool.mode": "flatten"}),
    "text_cnn_rnn": ("text", {"text.block": "text", "text.sequence_length": 32, "num_convs": 1, "num_rnns": 1}),
    "text_cnn_rnn-ngrams": ("text", {"text.block": "text_ngrams", "text.split": "characters"}),
    "tabular_mlp": ("table", {"columns.categorical": "embedding"}),
    "tabular_mlp-matrix": ("matrix", {}),
    "tabular_mlp-linear": ("table", {"columns.trees": "none", "columns.linear": "fitted"}),
    "tabular_mlp-matrix-linear": ("matrix", {"columns.trees": "none", "columns.linear": "fitted"}),
}


@pytest.mark.parametrize("case", CASES)
def test_sampled_configuration_builds_trains_reloads_and_exports(case, datasets, tmp_path):
    name = case.split("-")[0]
    data_key, fixed = CASES[case]
    data = datasets[data_key]
    space = load_space(name)
    validate_space(space)
    assert space.input == data.kind
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.enqueue_trial(fixed)
    config = space.sample(study.ask())
    assert fixed.items() <= config.params.items()
    model = build_model(config.architecture, data)
    expected = check_round_trip(model, data, tmp_path)

    if data.kind == "text":  # TextVectorization's string ops are TF Select (Flex) ops
        with pytest.raises(Exception, match="TF Select ops: .*StringLower|Lowering tensor list ops"):
            tflite_convert(model)
    elif data.columns is not None:  # one input per column: converted directly, run with LiteRT
        np.testing.assert_allclose(tflite_predict(tflite_convert(model), data.x_val), expected, atol=1e-5)
    elif any(isinstance(layer, keras.layers.Bidirectional | keras.layers.RNN) for layer in model.layers):
        with pytest.raises(Exception, match="Lowering tensor list ops"):  # a rolled loop, dynamic batch
            tflite_convert(model)
        got = tflite_predict(tflite_convert_batch1(model, tmp_path), data.x_val)  # one sample per call
        np.testing.assert_allclose(got, expected, atol=1e-5)
    else:
        np.testing.assert_allclose(tflite_predict(tflite_convert(model), data.x_val), expected, atol=1e-5)


def test_two_trial_search_on_text_logs_to_mlflow_and_keeps_the_best_model(datasets, stores):
    data = datasets["text"]
    small = {"text.sequence_length": 32, "text.embed_dim": 16, "encoder.depth": 1}  # the rest is sampled
    result = Search(
        "text_transformer",
        study_name="text",
        max_trials=2,
        seed=0,
        verbose=False,
        pruner="none",
        enqueue=[{**small, "encoder.norm": "pre"}, {**small, "encoder.norm": "post"}],
        **stores,
    ).fit(data=data, epochs=1)
    assert [t.state.name for t in result.study.trials] == ["COMPLETE", "COMPLETE"]
    _, runs = mlflow_runs(stores["tracking_uri"])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.mlflow_run_id]
    assert len(children) == 2 and all("text.sequence_length" in r.data.params for r in children)
    model = result.best_model()
    accuracy = float(np.mean(model.predict(data.x_val, verbose=0).argmax(1) == data.y_val))
    assert accuracy == pytest.approx(result.best_value, abs=1e-6)


def test_ragged_sequences_select_the_default_sequence_space(stores):
    seqs, labels = sequences(60, seed=1)
    result = Search(
        max_trials=2,
        seed=0,
        verbose=False,
        pruner="none",
        **stores,
        enqueue=[{"encoder.block": "gru", "encoder.depth": 1}, {"encoder.block": "conv1d"}],
    ).fit(seqs, labels, epochs=1)
    assert result.study.study_name.startswith("sequence_rnn-")
    assert [t.state.name for t in result.study.trials] == ["COMPLETE", "COMPLETE"]
    assert [t.params["encoder.block"] for t in result.study.trials] == ["gru", "conv1d"]
    data = result.dataset
    assert data.kind == "sequence" and data.masked and data.input_shape == (max(map(len, seqs)), 2)
    model = result.best_model()
    accuracy = float(np.mean(model.predict(data.x_val, verbose=0).argmax(1) == data.y_val))
    assert accuracy == pytest.approx(result.best_value, abs=1e-6)
