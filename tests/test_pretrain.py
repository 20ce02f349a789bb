"""Self-supervised pretraining (automl.pretrain, issue 21, first part): the contrastive loss against a
hand computation, and pretraining that changes the encoder and leaves it without the projection head."""

import numpy as np
import pytest


def _nt_xent_by_hand(z1, z2, t):
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n2, n = len(z), len(z1)
    total = 0.0
    for i in range(n2):
        partner = (i + n) % n2
        sims = np.array([z[i] @ z[k] / t for k in range(n2) if k != i])
        others = [k for k in range(n2) if k != i]
        total += -(z[i] @ z[partner] / t) + np.log(np.exp(sims).sum())
        assert partner in others
    return total / n2


def test_nt_xent_equals_the_hand_computed_loss():
    import keras

    from automl.pretrain import nt_xent

    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    for t in (0.5, 0.1):
        got = float(keras.ops.convert_to_numpy(nt_xent(z1, z2, t)))
        assert got == pytest.approx(_nt_xent_by_hand(z1, z2, t), rel=1e-5)
    # matching views score lower than mismatched ones
    assert float(nt_xent(z1, z1 + 0.01, 0.5)) < float(nt_xent(z1, z2, 0.5))


def test_pretraining_lowers_the_loss_and_returns_the_encoder_without_its_head(digits_small):
    import keras

    from automl.pretrain import pretrain

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    encoder = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(h))
    before = [w.copy() for w in encoder.get_weights()]
    x = (digits_small.x_train / 16.0).astype("float32")[..., None]
    losses = pretrain(encoder, x, "image", epochs=6, batch_size=64)
    assert losses[-1] < losses[0]
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(before, encoder.get_weights()))
    assert len(encoder.layers) == 3 and encoder.outputs[0].shape[-1] == 8  # no projection head inside
