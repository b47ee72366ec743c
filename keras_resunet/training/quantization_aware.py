"""Quantization-aware fine-tuning: training through the rounding of an int8 TFLite export.

Post-training int8 rounds every activation to one of 256 levels of its calibrated range and
every conv kernel to 255 levels per output channel; over the ~40 layers of a ResUNet each
rounding is small but they add up (results/export/). Fine-tuning a trained model with that
rounding simulated lets it learn weights the rounding hurts less; the exported int8 file is then
converted from the fine-tuned weights, calibrated as usual.

The simulated rounding uses fixed ranges: each layer output's min and max over calibration
crops, which is what the TFLite converter's calibration measures, so training sees the grid the
export will use. Gradients pass through the rounding unchanged (the straight-through estimator).
"""

import keras
import numpy as np
from keras import ops

BITS = 8


def activation_ranges(model, batches):
    """{layer name: [min, max]} of every layer's output, and "input" of the model's input, over
    `batches` (an iterable of input arrays). Each range includes 0, as TFLite's do."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    low = {name: 0.0 for name in ["input", *(layer.name for layer in layers)]}
    high = dict(low)
    for batch in batches:
        batch = np.asarray(batch, np.float32)
        outputs = probe.predict(batch, verbose=0)
        for name, values in (("input", batch), *zip((layer.name for layer in layers), outputs)):
            low[name] = min(low[name], float(np.min(values)))
            high[name] = max(high[name], float(np.max(values)))
    return {name: [low[name], high[name]] for name in low}


@keras.saving.register_keras_serializable(package="keras_resunet")
class RoundedOutput(keras.layers.Layer):
    """Runs `layer` (the same object: its weights are trained in place) with int8 rounding
    simulated: per-channel symmetric on a conv kernel, over the fixed range on the output (and,
    for the model's first layer, on the input)."""

    def __init__(self, layer, output_range, input_range=None, **kwargs):
        super().__init__(name=f"rounded_{layer.name}", **kwargs)
        self.layer = layer
        self.output_range = [float(value) for value in output_range]
        self.input_range = None if input_range is None else [float(v) for v in input_range]

    def call(self, *args, **kwargs):
        # *args: a layer such as Add takes a list, which a named `inputs` argument would stack
        inputs = args[0]
        if self.input_range is not None:
            inputs = _rounded(inputs, *self.input_range)
        layer = self.layer
        if isinstance(layer, keras.layers.Conv2D) and layer.groups == 1:
            kernel = layer.kernel
            limit = ops.stop_gradient(ops.max(ops.abs(kernel), axis=(0, 1, 2)))
            kernel = keras.quantizers.fake_quant_with_min_max_vars(
                kernel, -limit, limit, num_bits=BITS, narrow_range=True, axis=-1
            )
            outputs = ops.conv(
                inputs,
                kernel,
                strides=layer.strides,
                padding=layer.padding,
                data_format=layer.data_format,
                dilation_rate=layer.dilation_rate,
            )
            if layer.use_bias:
                outputs = outputs + layer.bias
            outputs = layer.activation(outputs)
        else:
            outputs = layer(inputs, *args[1:], **kwargs)
        return _rounded(outputs, *self.output_range)

    def get_config(self):
        return {
            **super().get_config(),
            "layer": keras.saving.serialize_keras_object(self.layer),
            "output_range": self.output_range,
            "input_range": self.input_range,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("name", None)  # derived from the layer's
        layer = keras.saving.deserialize_keras_object(config.pop("layer"))
        return cls(layer, **config)


def _rounded(values, low, high):
    return keras.quantizers.fake_quant_with_min_max_vars(values, low, high, num_bits=BITS)


def with_int8_rounding(model, ranges):
    """A model computing what `model` does with int8 rounding simulated; it shares `model`'s
    layers and weights, so training it trains `model` (which is what gets saved)."""
    missing = sorted(
        layer.name
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and layer.name not in ranges
    )
    if missing or "input" not in ranges:
        raise ValueError(
            f"no activation range for {(['input'] if 'input' not in ranges else []) + missing}: "
            "ranges were measured on another model"
        )
    first = {node.operation.name for node in _consumers_of_inputs(model)}

    def wrap(layer):
        input_range = ranges["input"] if layer.name in first else None
        return RoundedOutput(layer, ranges[layer.name], input_range)

    return keras.models.clone_model(model, clone_function=wrap)


def _consumers_of_inputs(model):
    """The nodes whose one input is a model input (its values: a layer that reads the input
    only for its shape, as a crop back to the input's size does, takes it with others)."""
    inputs = {id(tensor) for tensor in model.inputs}
    return [
        node
        for layer in model.layers
        for node in layer._inbound_nodes
        if not isinstance(layer, keras.layers.InputLayer)
        and len(node.input_tensors) == 1
        and id(node.input_tensors[0]) in inputs
    ]
