"""uint8 I/O (camera bytes in and out) as a wrapper around a model: what an app passes."""


def with_uint8_io(model):
    """`model` behind uint8 input and output tensors (scaling, clipping, rounding inside)."""
    import keras

    from keras_resunet.models.layers import FromUint8, ToUint8

    inputs = keras.Input((None, None, model.input_shape[-1]), dtype="uint8", name="image")
    outputs = ToUint8(name="to_uint8")(model(FromUint8(name="from_uint8")(inputs)))
    return keras.Model(inputs, outputs, name=f"{model.name}_uint8")
