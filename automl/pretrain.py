"""Self-supervised pretraining of an encoder on unlabeled samples (SimCLR, Chen et al. 2020).

Why: users often hold far more unlabeled images or series than labels. Contrastive pretraining
teaches the encoder that two random augmentations of one sample belong together and apart from
every other sample of the batch (the NT-Xent loss); fine-tuning on the few labels then starts from
features that already separate the data. The projection head exists only for this loss: the
encoder returned is the model given, without it, so saved and exported models never carry it.

Augmentations by kind: images, random crop-and-resize (translation + zoom), rotation and contrast;
sequences, Gaussian jitter, scaling and a random time shift. Both active in pretraining only.
"""

from __future__ import annotations

import keras
from keras import layers, ops

METHODS = ("simclr",)


def nt_xent(z1, z2, temperature: float = 0.5):
    """The normalized temperature-scaled cross-entropy of SimCLR over a batch of n pairs: for each of
    the 2n views, cross-entropy of picking its partner among the 2n - 1 others by cosine similarity / t."""
    z = ops.concatenate([z1, z2], axis=0)
    z = z / ops.maximum(ops.norm(z, axis=1, keepdims=True), 1e-12)
    n2 = ops.shape(z)[0]
    n = n2 // 2
    logits = ops.matmul(z, ops.transpose(z)) / temperature
    logits = logits - 1e9 * ops.eye(n2, dtype=logits.dtype)  # a view is not its own partner
    partners = ops.concatenate([ops.arange(n, n2), ops.arange(0, n)], axis=0)
    return ops.mean(keras.losses.sparse_categorical_crossentropy(partners, logits, from_logits=True))


def augmenter(kind: str, shape: tuple, seed: int = 0, flip: str = "none") -> keras.Sequential:
    """Two calls on one batch give two different views (random layers, training mode); `flip`
    (none | horizontal | vertical | horizontal_and_vertical): the mirrors the data allows."""
    if kind == "image":
        steps = [] if flip == "none" else [layers.RandomFlip(flip, seed=seed + 3)]
        steps += [
            layers.RandomTranslation(0.15, 0.15, fill_mode="constant", seed=seed),
            layers.RandomZoom((-0.3, 0.1), fill_mode="constant", seed=seed + 1),
            layers.RandomRotation(0.06, fill_mode="constant", seed=seed + 2),
        ]
    elif kind == "sequence":
        steps = [_Jitter(0.1, seed=seed)]
    else:
        raise ValueError(f"no augmentations for {kind!r} inputs (image and sequence have them)")
    return keras.Sequential([keras.Input(shape), *steps])


@keras.saving.register_keras_serializable(package="automl")
class _Jitter(layers.Layer):
    """Series views: Gaussian noise, a random scale per series, a random shift of up to 10 % of the steps;
    padding steps (all zero) stay zero, so the model still masks them."""

    def __init__(self, sigma: float = 0.1, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.sigma, self.seed_generator = sigma, keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        n = ops.shape(x)[0]
        real = ops.cast(ops.any(ops.not_equal(x, 0.0), axis=-1, keepdims=True), x.dtype)  # padding stays zero
        scale = 1.0 + self.sigma * keras.random.normal((n, 1, 1), seed=self.seed_generator)
        x = (x * scale + self.sigma * keras.random.normal(ops.shape(x), seed=self.seed_generator)) * real
        steps = ops.shape(x)[1]
        shift = ops.cast(
            keras.random.uniform((), 0, 0.1, seed=self.seed_generator) * ops.cast(steps, "float32"), "int32"
        )
        return ops.roll(x, shift, axis=1)


class SimCLR(keras.Model):
    """Trains `encoder` (inputs -> a representation) with a projection head and NT-Xent."""

    def __init__(self, encoder: keras.Model, augment: keras.Model, projection: int = 64, temperature: float = 0.5):
        super().__init__()
        self.encoder, self.augment, self.temperature = encoder, augment, temperature
        width = int(encoder.outputs[0].shape[-1])
        self.head = keras.Sequential(
            [keras.Input((width,)), layers.Dense(width, activation="relu"), layers.Dense(projection)]
        )
        self.tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.tracker]

    def train_step(self, data):
        import tensorflow as tf

        x = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            z1 = self.head(self.encoder(self.augment(x, training=True), training=True), training=True)
            z2 = self.head(self.encoder(self.augment(x, training=True), training=True), training=True)
            loss = nt_xent(z1, z2, self.temperature)
        variables = self.encoder.trainable_variables + self.head.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.tracker.update_state(loss)
        return {"loss": self.tracker.result()}

    def call(self, x, training=False):
        return self.head(self.encoder(x, training=training), training=training)


def pretrain(
    encoder: keras.Model,
    x_unlabeled,
    kind: str,
    *,
    epochs: int = 20,
    temperature: float = 0.5,
    projection: int = 64,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
    flip: str = "none",
    callbacks=(),
    verbose: int = 0,
) -> list[float]:
    """Pretrain `encoder` in place on `x_unlabeled` (no labels); returns the loss per epoch."""
    keras.utils.set_random_seed(seed)
    views = augmenter(kind, tuple(encoder.inputs[0].shape[1:]), seed, flip)
    trainer = SimCLR(encoder, views, projection, temperature)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    history = trainer.fit(
        x_unlabeled, epochs=epochs, batch_size=batch_size, shuffle=True, callbacks=list(callbacks), verbose=verbose
    )
    return [float(v) for v in history.history["loss"]]
