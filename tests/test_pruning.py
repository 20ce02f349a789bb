"""Magnitude pruning for Keras 3 (automl.pruning): masks that hold through training steps and saving,
the schedule's target reached, a plain model after `strip`, zeros that reach the TFLite file."""

import gzip

import numpy as np
import pytest


def _cnn(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.DepthwiseConv2D(3, activation="relu", padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def test_the_polynomial_schedule_rises_fast_then_slowly_to_the_target():
    from automl.pruning import polynomial_sparsity

    values = [polynomial_sparsity(t, 10, 110, 0.8) for t in range(0, 130, 10)]
    assert values[0] == 0 and values[1] == 0 and values[-1] == pytest.approx(0.8) and values[-2] == pytest.approx(0.8)
    steps = np.diff(values[1:12])
    assert all(steps >= 0) and steps[0] > 3 * steps[-1]  # fast first, slow at the end


def test_pruned_weights_stay_zero_through_training_and_saving_and_strip_leaves_a_plain_model(tmp_path, digits_small):
    import keras

    from automl.pruning import MagnitudePruning, prunable_variables, sparsity, strip

    model = _cnn()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = digits_small.x_train / 16.0, digits_small.y_train
    pruning = MagnitudePruning(0.8, begin=0.0, end=0.5, frequency=5)
    masks_seen = []

    class Watch(keras.callbacks.Callback):  # after every step: what was pruned is still exactly zero
        def on_train_batch_end(self, batch, logs=None):
            if pruning.step > pruning.end_step:
                zeros = [keras.ops.convert_to_numpy(v) == 0 for v in pruning.variables]
                masks_seen.append(zeros)

    model.fit(x, y, epochs=8, batch_size=32, verbose=0, callbacks=[pruning, Watch()])
    assert len(masks_seen) > 10
    for later in masks_seen[1:]:  # after the schedule ends, the pruned set never changes
        assert all((a == b).all() for a, b in zip(masks_seen[0], later))
    assert abs(sparsity(model) - 0.8) <= 0.01  # measured sparsity within 1 % of the target
    names = [v.path for v in prunable_variables(model)]
    assert any("depthwise" in n for n in names) and not any(n.startswith("dense_1/") for n in names)

    before = model.predict(x[:50], verbose=0)
    strip(model)
    assert all(v.constraint is None for v in model.trainable_variables)
    path = tmp_path / "pruned.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert abs(sparsity(loaded) - 0.8) <= 0.01  # the zeros survive saving
    np.testing.assert_allclose(loaded.predict(x[:50], verbose=0), before, atol=1e-5)
    # it still learned at 80 % sparsity (chance: 10 %)
    assert float(np.mean(before.argmax(1) == y[:50])) > 0.8


def test_structured_pruning_removes_whole_filters():
    from automl.pruning import magnitude_mask

    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 10)).astype("float32")
    kernel[..., 2] *= 0.01
    kernel[..., 7] *= 0.02
    mask = magnitude_mask(kernel, 0.2, structured=True)
    pruned = [c for c in range(10) if not mask[..., c].any()]
    assert pruned == [2, 7] and all(mask[..., c].all() for c in range(10) if c not in pruned)


def test_zeros_reach_the_tflite_file_and_shrink_it_gzipped(tmp_path, digits_small):
    from automl.export.convert import convert_tflite, export_saved_model
    from automl.pruning import MagnitudePruning, strip

    sizes = {}
    for target in (0.0, 0.9):
        model = _cnn()
        model.compile("adam", "sparse_categorical_crossentropy")
        callbacks = [MagnitudePruning(target, end=0.5, frequency=5)] if target else []
        model.fit(digits_small.x_train / 16.0, digits_small.y_train, epochs=4, verbose=0, callbacks=callbacks)
        strip(model)
        export_saved_model(model, tmp_path / f"saved-{target}")
        sizes[target] = len(gzip.compress(convert_tflite(tmp_path / f"saved-{target}", "float32")))
    assert sizes[0.9] < 0.6 * sizes[0.0], sizes


def test_structured_pruning_then_shrink_removes_the_units_and_computes_the_same(tmp_path, digits_small):
    """Zeroed units leave the Dense layers (their constant output folded into the next bias): fewer
    weights, a smaller TFLite file, the same predictions, and a plain model that loads with safe_mode."""
    import keras

    from automl.export.convert import convert_tflite, export_saved_model
    from automl.pruning import MagnitudePruning, shrink, strip

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(128)(h)
    h = keras.layers.Activation("relu")(h)
    h = keras.layers.Dropout(0.2)(h)
    h = keras.layers.Dense(64)(h)
    h = keras.layers.Activation("relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="output")(h))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = digits_small.x_train / 16.0, digits_small.y_train
    model.fit(x, y, epochs=6, batch_size=32, verbose=0, callbacks=[MagnitudePruning(0.5, structured=True)])
    small = shrink(strip(model))
    units = [layer.units for layer in small.layers if type(layer).__name__ == "Dense"]
    assert units == [64, 32, 10]  # half of each hidden layer's units gone
    assert small.count_params() < 0.45 * model.count_params()
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    sizes = []
    for name, m in (("big", model), ("small", small)):
        export_saved_model(m, tmp_path / name)
        sizes.append(len(convert_tflite(tmp_path / name, "float32")))
    assert sizes[1] < 0.5 * sizes[0]
