"""What an exported artifact takes and gives: the noise-level map channel of noise-map models,
and uint8 I/O (camera bytes in and out) as a wrapper around the model."""

import numpy as np

FLOAT_TOLERANCE = 1e-4


def takes_noise_map(model):
    return model.input_shape[-1] == model.output_shape[-1] + 1


def model_input(degraded, sigma, noise_map):
    """`degraded` (H, W, C) as the model's input: with a noise-level channel when it takes one."""
    if not noise_map:
        return degraded
    level = np.full((*degraded.shape[:-1], 1), sigma, np.float32)
    return np.concatenate([degraded, level], axis=-1)


def with_uint8_io(model):
    """`model` behind uint8 input and output tensors (scaling, clipping, rounding inside)."""
    import keras

    from keras_resunet.models.layers import FromUint8, ToUint8

    inputs = keras.Input((None, None, model.input_shape[-1]), dtype="uint8", name="image")
    outputs = ToUint8(name="to_uint8")(model(FromUint8(name="from_uint8")(inputs)))
    return keras.Model(inputs, outputs, name=f"{model.name}_uint8")


class Codec:
    """How float32 images in [0, 1] become an artifact's input and its output becomes float32
    again, and how far from Keras a float artifact may then be (one level for uint8 I/O)."""

    def __init__(self, io):
        self.io = io
        self.tolerance = FLOAT_TOLERANCE if io == "float32" else 1 / 255 + 1e-6

    def encode(self, batch):
        if self.io == "float32":
            return np.asarray(batch, np.float32)
        return np.round(np.clip(batch, 0, 1) * 255).astype(np.uint8)

    def decode(self, batch):
        batch = np.asarray(batch)
        return batch.astype(np.float32) / 255 if batch.dtype == np.uint8 else batch
