"""int8 TFLite rounding, simulated on a Keras model: for quantization-aware fine-tuning and for
finding the layers whose rounding costs most.

Post-training int8 rounds every activation to one of 256 levels of its calibrated range and
every conv kernel to 255 levels per output channel; over the ~40 layers of a ResUNet each
rounding is small but they add up (results/export/). Fine-tuning a trained model with that
rounding simulated (the trainer's `quantization_aware: true`) lets it learn weights the rounding
hurts less; the exported int8 file is then converted from the fine-tuned weights, calibrated as
usual. Rounding one layer at a time says which layers to keep in float (`layer_sensitivity`).

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
    # a few samples per call, without `predict`'s per-call dataset: calibration sets are
    # hundreds of small batches, and every layer's output of a call is held at once
    for batch in _stacked(batches, pixels=8 * 96 * 96):
        outputs = probe.predict_on_batch(batch)
        for name, values in (("input", batch), *zip((layer.name for layer in layers), outputs)):
            low[name] = min(low[name], float(np.min(values)))
            high[name] = max(high[name], float(np.max(values)))
    return {name: [low[name], high[name]] for name in low}


@keras.saving.register_keras_serializable(package="keras_resunet")
class RoundedOutput(keras.layers.Layer):
    """Runs `layer` (the same object: its weights are trained in place) with int8 rounding
    simulated: per-channel symmetric on a conv kernel (unless `kernels` is False), over the
    fixed range on the output (and, for the model's first layer, on the input); a range of None
    leaves that tensor unrounded."""

    def __init__(self, layer, output_range, input_range=None, kernels=True, **kwargs):
        super().__init__(name=f"rounded_{layer.name}", **kwargs)
        self.layer = layer
        self.output_range = None if output_range is None else [float(v) for v in output_range]
        self.input_range = None if input_range is None else [float(v) for v in input_range]
        self.kernels = bool(kernels)

    def call(self, *args, **kwargs):
        # *args: a layer such as Add takes a list, which a named `inputs` argument would stack
        inputs = args[0]
        if self.input_range is not None:
            inputs = _rounded(inputs, *self.input_range)
        layer = self.layer
        if self.kernels and isinstance(layer, keras.layers.Conv2D) and layer.groups == 1:
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
        if self.output_range is None:
            return outputs
        return _rounded(outputs, *self.output_range)

    def get_config(self):
        return {
            **super().get_config(),
            "layer": keras.saving.serialize_keras_object(self.layer),
            "output_range": self.output_range,
            "input_range": self.input_range,
            "kernels": self.kernels,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("name", None)  # derived from the layer's
        layer = keras.saving.deserialize_keras_object(config.pop("layer"))
        return cls(layer, **config)


def _rounded(values, low, high):
    return keras.quantizers.fake_quant_with_min_max_vars(values, low, high, num_bits=BITS)


def with_int8_rounding(model, ranges, kernels=True):
    """A model computing what `model` does with int8 rounding simulated; it shares `model`'s
    layers and weights, so training it trains `model` (which is what gets saved). `ranges`:
    from `activation_ranges`; a layer (or "input") mapped to None is not rounded, and with
    `kernels` False no conv kernel is."""
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
        return RoundedOutput(layer, ranges[layer.name], input_range, kernels)

    return keras.models.clone_model(model, clone_function=wrap)


def layer_sensitivity(model, ranges, batches):
    """[(layer name, mean squared change of the model's output)], largest first, when that
    layer's output alone is rounded to int8 over its range (kernels and every other tensor
    float), on `batches`. What the output feels, unlike a layer's own error in steps: a step at
    full resolution just before the output costs more than one deep in the network."""
    batches = _stacked(batches)
    reference = [np.asarray(model(batch, training=False)) for batch in batches]
    # one copy with nothing rounded; each layer's rounding is switched on in turn (eager
    # calls read the range afresh, so nothing is rebuilt)
    rounded = with_int8_rounding(model, dict.fromkeys(ranges), kernels=False)
    changes = []
    for layer in model.layers:
        if layer.name not in ranges:
            continue
        wrapper = rounded.get_layer(f"rounded_{layer.name}")
        wrapper.output_range = ranges[layer.name]
        squared = [
            np.mean((np.asarray(rounded(batch, training=False)) - expected) ** 2)
            for batch, expected in zip(batches, reference)
        ]
        wrapper.output_range = None
        changes.append((layer.name, float(np.mean(squared))))
    return sorted(changes, key=lambda change: change[1], reverse=True)


def _stacked(batches, pixels=None):
    """`batches` joined into as few as possible (one per image size, each of at most `pixels`
    pixels when given, and at least one sample): one call each."""
    by_shape = {}
    for batch in batches:
        batch = np.asarray(batch, np.float32)
        by_shape.setdefault(batch.shape[1:], []).append(batch)
    joined = [np.concatenate(group) for group in by_shape.values()]
    if pixels is None:
        return joined
    chunks = []
    for group in joined:
        most = max(1, pixels // (group.shape[1] * group.shape[2]))
        chunks += [group[start : start + most] for start in range(0, len(group), most)]
    return chunks


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
