"""The shipped image spaces: each passes the space check, a seeded sample builds, trains a step with
its own training settings, reloads identically and converts to TFLite; a short search runs on digits."""

import keras
import numpy as np
import optuna
import pytest
from model_checks import check_model

from automl import Search
from automl.builder import build_model, validate_space
from automl.space import load_space, shipped_spaces
from automl.training import loss_and_metrics, make_optimizer, training_settings

IMAGE_SPACES = ["image_cnn", "image_resnet", "image_mbconv", "image_cells", "image_transfer"]


def _sample(space, seed):
    return space.sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask())


def test_the_image_spaces_are_shipped_short_and_commented():
    files = shipped_spaces()
    for name in IMAGE_SPACES:
        text = files[name].read_text()
        assert text.startswith("#") and len(text.splitlines()) < 60, name
        assert load_space(name).input == "image"


@pytest.mark.parametrize("name", IMAGE_SPACES)
def test_sampled_model_trains_reloads_and_converts_to_tflite(name, digits_small, tmp_path):
    space = load_space(name)
    validate_space(space)
    config = _sample(space, seed=0)
    keras.utils.set_random_seed(0)
    model = build_model(config.architecture, digits_small)
    training = training_settings(config.training)
    loss, metrics = loss_and_metrics(digits_small.task, training)
    model.compile(optimizer=make_optimizer(training, 10, model), loss=loss, metrics=metrics, run_eagerly=True)
    result = check_model(model, digits_small.x_train[:16], digits_small.y_train[:16], tmp_path)
    assert result.predictions.shape == (16, 10)


@pytest.mark.parametrize("name", ["image_resnet", "image_mbconv", "image_cells"])
def test_every_sampled_depth_fits_8x8_images(name, digits_small):
    """Deep samples stop downsampling at one pixel instead of failing on tiny images."""
    space = load_space(name)
    counts = []
    for seed in range(12):
        config = _sample(space, seed)
        counts.append(next(v for k, v in config.params.items() if k.startswith("num_")))
        assert build_model(config.architecture, digits_small).output.shape == (None, 10)
    assert max(counts) >= 3  # the deepest stacks were among them


def test_cell_parameters_exist_only_for_the_chosen_operation():
    space = load_space("image_cells")
    own = {"conv": {"skip", "separable"}, "residual": {"bottleneck"}, "mbconv": {"expand_ratio", "se_ratio"}}
    seen = set()
    for seed in range(30):
        config = _sample(space, seed)
        assert len(config.architecture["cells"]) == config.params["num_cells"]
        for i, cell in enumerate(config.architecture["cells"]):
            op = cell["op"]
            seen.add(op)
            for other, names in own.items():
                for key in names:
                    assert (key in cell) == (other == op) == (f"cells.{i}.{key}" in config.params)
    assert seen == set(own)


def test_two_trial_search_on_digits_with_the_cell_space(digits_small, stores):
    result = Search(
        "image_cells", study_name="cells", max_trials=2, seed=0, verbose=False, pruner="none", **stores
    ).fit(data=digits_small, epochs=1)
    trials = result.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        params = t.user_attrs["params"]
        ops = [params[f"cells.{i}.op"] for i in range(params["num_cells"])]
        assert all((f"cells.{i}.expand_ratio" in params) == (op == "mbconv") for i, op in enumerate(ops))
    model = result.best_model()
    accuracy = float(np.mean(model.predict(digits_small.x_val, verbose=0).argmax(1) == digits_small.y_val))
    assert accuracy == pytest.approx(result.best_value, abs=1e-6)
