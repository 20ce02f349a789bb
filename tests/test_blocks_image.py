"""Image blocks on real 8x8 digits: each builds, trains a step, reloads from `.keras` identically and
converts to TFLite (LiteRT agrees with Keras); plus what each block promises and its errors."""

import keras
import numpy as np
import optuna
import pytest
from model_checks import check_model

from automl.blocks import BLOCKS
from automl.builder import build_model, validate_space
from automl.space import Categorical, SearchSpace, SpaceError


@pytest.fixture(scope="module")
def batch(digits_small):
    return digits_small.x_train[:16], digits_small.y_train[:16]


def _layers(model, kind):
    out = []
    for layer in model.layers:
        out += _layers(layer, kind) if isinstance(layer, keras.Model) else [layer] if isinstance(layer, kind) else []
    return out


def _block_model(shape, block, **params):
    """The block alone on a symbolic input of `shape` (no builder head), to look at its output."""
    inputs = keras.Input(shape)
    return keras.Model(inputs, BLOCKS[block](inputs, **params))


STEM = {"block": "conv", "filters": 4, "pooling": "none"}
ARCHITECTURES = {
    "dense": {"h": {"block": "dense", "units": 8, "depth": 2, "norm": "batch", "dropout": 0.1}},
    "conv_separable_strided": {
        "c": {"block": "conv", "filters": 4, "depth": 2, "pooling": "strided", "separable": True},
        "p": {"block": "global_pool", "mode": "max"},
    },
    "conv_flatten": {
        "c": {"block": "conv", "filters": 4, "pooling": "avg", "dropout": 0.1},
        "p": {"block": "global_pool", "mode": "flatten"},
    },
    "residual_basic": {"s": STEM, "r": {"block": "residual", "filters": 8, "strides": 2, "depth": 2}},
    "residual_bottleneck": {"r": {"block": "residual", "filters": 8, "bottleneck": True, "dropout": 0.1}},
    "mbconv": {
        "s": STEM,
        "m": {"block": "mbconv", "filters": 4, "depth": 2, "kernel_size": 5, "stochastic_depth": 0.2},
    },
    "augment": {
        "a": {
            "block": "augment",
            "flip": "horizontal",
            "rotation": 0.1,
            "zoom": 0.1,
            "translation": 0.1,
            "contrast": 0.2,
        },
        "c": {"block": "conv", "filters": 4},
    },
    "cell_conv": {"s": STEM, "c": {"block": "cell", "op": "conv", "filters": 4, "separable": True}},
    "cell_residual": {"c": {"block": "cell", "op": "residual", "filters": 4, "downsample": True}},
    "cell_mbconv": {"s": STEM, "c": {"block": "cell", "op": "mbconv", "filters": 4, "expand_ratio": 2}},
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_block_trains_reloads_and_converts_to_tflite(name, digits_small, batch, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(ARCHITECTURES[name], digits_small)
    result = check_model(model, *batch, tmp_path)
    assert result.predictions.shape == (16, 10) and result.tflite_diff < 1e-4


def test_residual_projects_the_shortcut_only_when_the_shape_changes():
    same = _block_model((8, 8, 8), "residual", filters=8)
    assert [tuple(c.kernel.shape) for c in _layers(same, keras.layers.Conv2D)] == [(3, 3, 8, 8), (3, 3, 8, 8)]
    wider = _block_model((8, 8, 4), "residual", filters=8, strides=2)
    kernels = [tuple(c.kernel.shape) for c in _layers(wider, keras.layers.Conv2D)]
    assert (1, 1, 4, 8) in kernels and wider.output.shape == (None, 4, 4, 8)
    bottleneck = _block_model((8, 8, 16), "residual", filters=16, bottleneck=True)
    assert [tuple(c.kernel.shape) for c in _layers(bottleneck, keras.layers.Conv2D)] == [
        (1, 1, 16, 4),
        (3, 3, 4, 4),
        (1, 1, 4, 16),
    ]
    # the identity shortcut: all-zero branch weights leave relu(x)
    for layer in _layers(same, keras.layers.BatchNormalization):
        layer.gamma.assign(np.zeros_like(layer.gamma))
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 8)).astype("float32")
    np.testing.assert_allclose(same(x, training=False), np.maximum(x, 0), atol=1e-6)


def test_residual_stops_downsampling_at_one_pixel():
    model = _block_model((2, 2, 4), "residual", filters=4, strides=2, depth=1)
    deeper = keras.Model(model.inputs, BLOCKS["residual"](model.output, filters=4, strides=2))
    assert deeper.output.shape == (None, 1, 1, 4)
    strides = [c.strides for c in _layers(deeper, keras.layers.Conv2D)]
    assert strides.count((2, 2)) == 2 and len(strides) == 5  # first unit: strided conv + projection; second: identity


def test_mbconv_squeeze_excite_residual_and_stochastic_depth_in_training_only():
    model = _block_model((4, 4, 8), "mbconv", filters=8, expand_ratio=2, se_ratio=0.25, stochastic_depth=0.5)
    assert len(_layers(model, keras.layers.Multiply)) == 1  # squeeze-and-excitation
    assert [tuple(c.kernel.shape) for c in _layers(model, keras.layers.Conv2D)] == [
        (1, 1, 8, 16),
        (1, 1, 16, 2),
        (1, 1, 2, 16),
        (1, 1, 16, 8),
    ]  # expand, SE squeeze/excite, project
    x = np.random.default_rng(0).normal(size=(64, 4, 4, 8)).astype("float32")
    dropped = np.all(np.isclose(np.asarray(model(x, training=True)), x), axis=(1, 2, 3))
    assert 10 < dropped.sum() < 54  # whole branches dropped per sample, about half
    assert not np.any(np.all(np.isclose(np.asarray(model(x, training=False)), x), axis=(1, 2, 3)))
    np.testing.assert_array_equal(model(x), model(x, training=False))  # no `training` = inference

    no_se = _block_model((4, 4, 8), "mbconv", filters=16, se_ratio=0.0, strides=2)
    assert not _layers(no_se, keras.layers.Multiply) and not _layers(no_se, keras.layers.Add)
    assert no_se.output.shape == (None, 2, 2, 16)


def test_augment_changes_images_in_training_only_even_when_called_without_training():
    model = _block_model(
        (8, 8, 1), "augment", rotation=0.2, zoom=0.2, translation=0.2, contrast=0.5, flip="horizontal_and_vertical"
    )
    assert len(model.layers) == 6
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(model(x, training=False), x)
    np.testing.assert_array_equal(model(x), x)  # what model.export's serving function does
    assert not np.allclose(model(x, training=True), x)
    assert len(_block_model((8, 8, 1), "augment").layers) == 1  # all factors 0: nothing added


def test_cell_skip_only_where_shapes_allow():
    same = _block_model((8, 8, 4), "cell", op="conv", filters=4)
    assert len(_layers(same, keras.layers.Add)) == 1
    assert not _layers(_block_model((8, 8, 4), "cell", op="conv", filters=4, skip=False), keras.layers.Add)
    assert not _layers(_block_model((8, 8, 4), "cell", op="conv", filters=8), keras.layers.Add)
    down = _block_model((8, 8, 4), "cell", op="conv", filters=4, downsample=True)
    assert down.output.shape == (None, 4, 4, 4) and not _layers(down, keras.layers.Add)
    for op in ("residual", "mbconv"):
        assert _block_model((8, 8, 4), "cell", op=op, filters=8, downsample=True).output.shape == (None, 4, 4, 8)


def test_a_categorical_block_gets_only_its_own_parameters(digits_small):
    space = SearchSpace(
        architecture={
            "stage": {
                "block": Categorical(choices=["residual", "mbconv"]),
                "filters": 4,
                "bottleneck": {"type": "bool", "when": {"block": "residual"}},
                "expand_ratio": {"type": "int", "low": 1, "high": 3, "when": {"block": "mbconv"}},
            }
        }
    )
    validate_space(space)
    res = space.sample(optuna.trial.FixedTrial({"stage.block": "residual", "stage.bottleneck": True}))
    mb = space.sample(optuna.trial.FixedTrial({"stage.block": "mbconv", "stage.expand_ratio": 3}))
    assert set(res.params) == {"stage.block", "stage.filters", "stage.bottleneck"}
    assert set(mb.params) == {"stage.block", "stage.filters", "stage.expand_ratio"}
    assert _layers(build_model(mb.architecture, digits_small), keras.layers.DepthwiseConv2D)
    assert not _layers(build_model(res.architecture, digits_small), keras.layers.DepthwiseConv2D)
    bad = SearchSpace(architecture={"stage": {"block": Categorical(choices=["residual", "mbconv"]), "pooling": "max"}})
    with pytest.raises(SpaceError, match=r"architecture\.stage\.pooling: not a parameter of block residual/mbconv"):
        validate_space(bad)


@pytest.mark.parametrize(
    "block, params, message",
    [
        ("residual", {"strides": 3}, "residual strides must be 1 or 2, not 3"),
        ("residual", {"filters": 0}, "residual filters and depth must be at least 1"),
        ("mbconv", {"se_ratio": 1.5}, r"mbconv se_ratio must be in \[0, 1\]"),
        ("mbconv", {"expand_ratio": 0}, "mbconv filters, depth and expand_ratio must be at least 1"),
        ("augment", {"flip": "diagonal"}, "augment flip must be one of"),
        ("augment", {"rotation": 2}, "augment rotation must be between 0 and 0.5, not 2"),
        ("cell", {"op": "pool"}, "cell op must be one of"),
        ("backbone", {"source": "resnet9"}, "backbone source 'resnet9' is neither a known application"),
        ("backbone", {"weights": "imagenet"}, "would download them; give the path of a local weights file"),
        ("backbone", {"weights": "missing.weights.h5"}, "backbone weights file missing.weights.h5: no such file"),
        ("backbone", {"source": "efficientnet_b0", "alpha": 0.5}, "alpha applies to the mobilenet applications"),
        ("backbone", {"frozen_fraction": 1.5}, "frozen_fraction must be between 0 and 1"),
        ("backbone", {"image_size": 16}, "image_size must be at least 32"),
        ("backbone", {"source": "nowhere/best.keras"}, "backbone source nowhere/best.keras: no such file"),
    ],
)
def test_bad_block_parameters_say_what_is_wrong(block, params, message):
    with pytest.raises(ValueError, match=message):
        BLOCKS[block](keras.Input((8, 8, 1)), **params)


@pytest.mark.parametrize("block", ["residual", "mbconv", "augment", "cell", "backbone"])
def test_image_blocks_reject_flat_features(block):
    with pytest.raises(ValueError, match=rf"{block} block needs image feature maps .* got shape \(None, 16\)"):
        BLOCKS[block](keras.Input((16,)))


@pytest.fixture(scope="module")
def earlier_model(digits_small, tmp_path_factory):
    """An earlier study's model on disk: rescale -> conv -> pool -> dense(6) -> output head."""
    keras.utils.set_random_seed(1)
    model = build_model(
        {"c": {"block": "conv", "filters": 4}, "p": {"block": "global_pool"}, "d": {"block": "dense", "units": 6}},
        digits_small,
    )
    path = tmp_path_factory.mktemp("earlier") / "best.keras"
    model.save(path)
    return model, path


def test_backbone_from_a_saved_model_keeps_its_features_and_drops_its_head(
    digits_small, batch, earlier_model, tmp_path
):
    earlier, path = earlier_model
    keras.utils.set_random_seed(0)
    model = build_model(
        {"b": {"block": "backbone", "source": str(path), "frozen_fraction": 0.3}, "h": {"block": "dense", "units": 8}},
        digits_small,
    )
    backbone = model.get_layer("backbone")
    assert [type(layer).__name__ for layer in backbone.layers[1:]] == [
        "Conv2D",
        "BatchNormalization",
        "Activation",
        "MaxPooling2D",
        "GlobalAveragePooling2D",
        "Dense",
        "Activation",
    ]  # no second rescaling, no old head
    assert [layer.trainable for layer in backbone.layers if layer.weights] == [False, True, True]
    features = keras.Model(model.inputs, model.layers[model.layers.index(backbone) + 1].input)
    penultimate = keras.Model(earlier.inputs, earlier.get_layer("output").input)
    np.testing.assert_allclose(
        features.predict(batch[0], verbose=0), penultimate.predict(batch[0], verbose=0), atol=1e-6
    )
    frozen = np.array(backbone.layers[1].kernel)
    check_model(model, *batch, tmp_path)
    np.testing.assert_array_equal(backbone.layers[1].kernel, frozen)  # the frozen part did not train


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras 3.15 load_weights noise; checked below
def test_backbone_application_loads_a_local_weights_file_and_maps_pixels(tmp_path):
    reference = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    weights = tmp_path / "mobilenet_v2_0.35.weights.h5"
    reference.save_weights(weights)
    model = _block_model((8, 8, 1), "backbone", alpha=0.35, weights=str(weights), frozen_fraction=1.0)
    backbone = model.get_layer("backbone")
    assert backbone.input.shape == (None, 32, 32, 3) and not backbone.trainable_weights
    assert len(backbone.weights) == len(reference.weights) == 260
    for got, want in zip(backbone.weights, reference.weights):
        np.testing.assert_array_equal(got, want)
    rescale = _layers(model, keras.layers.Rescaling)[0]  # [0, 1] pixels -> MobileNet's [-1, 1]
    assert (rescale.scale, rescale.offset) == (2.0, -1.0)
    with pytest.raises(ValueError, match=r"mobilenet_v2_0.35.weights.h5 does not fit mobilenet_v2 \(alpha 0.5"):
        _block_model((8, 8, 1), "backbone", alpha=0.5, weights=str(weights))


def test_a_short_trial_is_validated_on_batch_statistics_it_has_caught_up_with(digits_small):
    """Validation runs in inference mode, on batch normalisation's moving statistics. After a short
    trial (60 steps) they must describe the trained network's activations: at Keras' default
    momentum (0.99) the moving mean still held about half of its initial 0, so the search judged
    batch-normed trials on stale statistics (mnist_test, 3 epochs: validation loss 0.85 at
    accuracy 0.957, against 0.12 at momentum 0.9)."""
    from automl.records import TrialSettings
    from automl.training import fit_model, training_settings

    keras.utils.set_random_seed(0)
    arch = {
        "c": {"block": "conv", "filters": 16, "batch_norm": True, "pooling": "avg"},
        "p": {"block": "global_pool", "mode": "avg"},
    }
    model = build_model(arch, digits_small)
    training = training_settings({"learning_rate": 3e-3, "batch_size": 4})
    fit_model(model, digits_small, training, TrialSettings("val_loss", "minimize", epochs=1, patience=None), [])
    assert int(model.optimizer.iterations) == len(digits_small.y_train) // 4 == 60
    (norm,) = _layers(model, keras.layers.BatchNormalization)
    before = keras.Model(model.inputs, norm.input)  # what the layer normalises, at the trained weights
    activations = np.asarray(before(digits_small.x_train))
    mean = activations.mean(axis=(0, 1, 2))
    gap = np.abs(np.asarray(norm.moving_mean) - mean) / np.abs(mean)
    assert np.median(gap) < 0.3  # measured: 0.14 at momentum 0.9 (batches of 4 are noisy), 0.63 at 0.99
