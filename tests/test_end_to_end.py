"""A user's own `model.fit` on the data pipeline learns to denoise."""

import keras

from keras_resunet import build_resunet, data, metrics
from keras_resunet.degradations import GaussianNoise
from keras_resunet.demo import sample_image


def test_few_hundred_steps_lower_loss_and_beat_the_noisy_input():
    train = [sample_image(name)[:192, :192] for name in ("coffee", "rocket")]
    test = sample_image("chelsea")[:96, :128]
    noise = GaussianNoise(0.1)
    dataset = data.patch_dataset(train, noise, patch_size=32, batch_size=16, seed=0)
    model = build_resunet(base_filters=8, depth=3)
    model.compile(keras.optimizers.Adam(2e-3), "mse", jit_compile=False)
    history = model.fit(dataset, steps_per_epoch=100, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]

    noisy, clean = data.evaluation_pairs([test], noise, seed=0)
    restored = model.predict(noisy[0][None], verbose=0)[0]
    psnr_noisy = float(metrics.psnr(noisy[0], clean[0]))
    psnr_restored = float(metrics.psnr(restored, clean[0]))
    assert 19.5 < psnr_noisy < 20.6  # sigma 0.1 is 20 dB before clipping
    assert psnr_restored > psnr_noisy + 2.0, (psnr_noisy, psnr_restored)
