"""The model as an app calls it: named inputs, the noise level as a number, the app's pixel type."""

import numpy as np

INPUT_IMAGE, INPUT_SIGMA, OUTPUT = "image", "sigma", "restored"


def app_inputs(batch):
    """A batch laid out as a noise-map Keras model takes it (the noise level as the last
    channel) as the named inputs of its deployment model: `image`, and `sigma` (N, 1) float32
    read at each image's first pixel, on the batch's scale."""
    batch = np.asarray(batch)
    return {INPUT_IMAGE: batch[..., :-1], INPUT_SIGMA: batch[:, 0, 0, -1:].astype(np.float32)}


def deployment_model(model, io="float32"):
    """`model` behind the inputs an app passes and the output it reads.

    Input `image`: NHWC, RGB (or one gray channel), float32 in [0, 1] or, with `io="uint8"`,
    0-255 pixels (the scaling, clipping and rounding inside). A noise-level-map model takes a
    second input `sigma`, shape (N, 1) float32: the noise standard deviation on the image's
    scale (0-1 for float32 images, 0-255 for uint8 ones), broadcast to the map inside the graph.
    Output `restored`: the image's shape, type and range.
    """
    import keras

    from keras_resunet.calibration import takes_noise_map
    from keras_resunet.models.layers import FromUint8, NoiseLevelMap, ToUint8

    noise_map = takes_noise_map(model)
    channels = model.input_shape[-1] - int(noise_map)
    uint8 = io == "uint8"
    image = keras.Input(
        (None, None, channels), dtype="uint8" if uint8 else "float32", name=INPUT_IMAGE
    )
    x = FromUint8(name="from_uint8")(image) if uint8 else image
    inputs = image
    if noise_map:
        sigma = keras.Input((1,), name=INPUT_SIGMA)
        level = keras.layers.Rescaling(1 / 255, name="sigma_to_unit")(sigma) if uint8 else sigma
        x = NoiseLevelMap(name="noise_level_map")([x, level])
        inputs = {INPUT_IMAGE: image, INPUT_SIGMA: sigma}
    y = model(x)
    y = ToUint8(name=OUTPUT)(y) if uint8 else keras.layers.Identity(name=OUTPUT)(y)
    return keras.Model(inputs, y, name=f"{model.name}_{io}")
