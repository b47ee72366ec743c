"""TFLite quantization: calibration data, converter settings per variant, per-layer error.

Variants (`QUANTIZATIONS`, "none" is float32):
- fp16: float16 weights, float32 compute where the runtime prefers it.
- dynamic: int8 weights, float activations quantized on the fly.
- int8: int8 weights and activations, calibrated on noisy crops (every op integer).
- int8_selective: int8, except the layers whose rounding changes the model's output most;
  those stay float32. With the Keras model at hand they are found by rounding one layer at a
  time in a Keras copy (`int8_simulation.layer_sensitivity`); without it, by TFLite's
  quantization debugger: the layers whose own error is largest in quantization steps.
- int16x8: int16 activations, int8 weights (TFLite's 16x8 mode): closer to float than int8,
  but most runtimes (XNNPACK among them) have no fast kernels for it.
"""

import csv
import io
import itertools
import math

import numpy as np

QUANTIZATIONS = ("none", "fp16", "dynamic", "int8", "int8_selective", "int16x8")
CALIBRATED = ("int8", "int8_selective", "int16x8")
# Layers left in float by int8_selective by default: where the gain levels off on the noise-map
# ResUNet (results/export/quantization_resunet-noise-map.md).
FLOAT_LAYERS = 10
LAYER_ERROR_SAMPLES = 16  # calibration samples the debugger compares float and int8 ops on
# A noise-map model's int8 activation ranges must hold its activations at every level it is
# calibrated for; at low noise one range for 0 ... 75/255 costs about half its int8 loss. One
# file per band of levels, each calibrated on its own band, takes that cost away; an app picks
# the file by the sigma it feeds the map (results/export/). The edge (0.08, 20.4/255) sits
# between the levels people test and use (15 and 25 /255), so each of those has one file.
NOISE_BANDS = ((0.0, 0.08), (0.08, 0.3))
BAND_LEVELS = 6  # calibration levels spread over a band, its ends included


def check_noise_band(band):
    """(low, high) of a band of noise levels on the [0, 1] scale, 0 <= low < high <= 1."""
    try:
        low, high = (float(value) for value in band)
    except (TypeError, ValueError):
        raise ValueError(f"A noise band is (low, high). Received: {band!r}") from None
    if not 0 <= low < high <= 1:
        raise ValueError(
            f"A noise band needs 0 <= low < high <= 1 (sigma on the [0, 1] scale). "
            f"Received: ({low:g}, {high:g})"
        )
    return low, high


def parse_noise_bands(text):
    """'0:0.1,0.1:0.3' -> ((0.0, 0.1), (0.1, 0.3))."""
    bands = []
    for part in text.split(","):
        pieces = part.split(":")
        if len(pieces) != 2:
            raise ValueError(
                f"Noise bands look like LOW:HIGH,LOW:HIGH (sigma on [0, 1], e.g. 0:0.1,0.1:0.3)."
                f" Received: {text!r}"
            )
        try:
            bands.append(check_noise_band(pieces))
        except ValueError as error:
            raise ValueError(f"{error} in {text!r}") from None
    if len(set(bands)) == len(bands):
        # every level must have one file: bands meet end to end, no level in two or in none
        ordered = sorted(bands)
        for (_, high), (low, _) in itertools.pairwise(ordered):
            if low != high:
                problem = "overlap" if low < high else "leave a gap"
                raise ValueError(
                    f"Noise bands {problem} between {high:g} and {low:g}: each band must start "
                    f"where the one below ends. Received: {text!r}"
                )
    return tuple(bands)


def band_sigmas(band):
    """The calibration noise levels of a band: `BAND_LEVELS` spread evenly, ends included."""
    low, high = check_noise_band(band)
    return tuple(float(value) for value in np.linspace(low, high, BAND_LEVELS))


def band_of(sigma, bands):
    """The first of `bands` that holds `sigma` (ends included), or None."""
    return next((band for band in bands if band[0] <= sigma <= band[1]), None)


def converter(saved_model_dir, quantization, dataset=None):
    """A `TFLiteConverter` set up for one variant (`dataset`: calibration generator, required
    for the calibrated variants)."""
    import tensorflow as tf

    if quantization in CALIBRATED and dataset is None:
        raise ValueError(f"{quantization} quantization needs representative images")
    result = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    # Builtin ops only: mobile runtimes without the Flex delegate must be able to run the file.
    result.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "none":
        return result
    result.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "fp16":
        result.target_spec.supported_types = [tf.float16]
    if quantization in CALIBRATED:
        result.representative_dataset = dataset
    if quantization == "int8":
        result.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if quantization == "int16x8":
        ops_set = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        # the builtin set too: the padding's shape arithmetic (FLOOR_MOD) has no 16x8 kernel
        result.target_spec.supported_ops = [ops_set, tf.lite.OpsSet.TFLITE_BUILTINS]
    return result


def convert(
    saved_model_dir,
    quantization,
    dataset=None,
    float_layers=None,
    layers=None,
    ranking=None,
):
    """The `.tflite` bytes of one variant. For int8_selective: `float_layers`, how many layers
    stay float (default `FLOAT_LAYERS`, fewer in a model that small); `layers`, `layer_errors`
    already measured; `ranking`, Keras layer names most sensitive first (`sensitivity_ranking`),
    which choose the float layers when given (else the debugger's worst layers do)."""
    if quantization != "int8_selective":
        return converter(saved_model_dir, quantization, dataset).convert()
    import tensorflow as tf

    # one calibration serves the layer list and the converted file
    debugger = _debugger(saved_model_dir, dataset, LAYER_ERROR_SAMPLES)
    layers = layers if layers is not None else _layer_rows(debugger)
    if ranking is not None:  # Keras layers with an op of their own in the TFLite graph
        ranking = [name for name in ranking if tensors_of(layers, [name])]
    count = len(ranking) if ranking is not None else len(layers)
    if float_layers is None:
        float_layers = min(FLOAT_LAYERS, count - 1)
    if not 0 < float_layers < count:
        raise ValueError(
            f"int8_selective keeps 1 to {count - 1} of the {count} quantized layers "
            f"in float. Received: {float_layers} (all in float is quantization 'none')"
        )
    if ranking is None:
        keep = [row["tensor_name"] for row in layers[:float_layers]]
    else:
        keep = tensors_of(layers, ranking[:float_layers])
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep)
    return debugger.get_nondebug_quantized_model()


def layer_errors(saved_model_dir, dataset, samples=LAYER_ERROR_SAMPLES):
    """Per-layer int8 error on `dataset`, worst first: TFLite's quantization debugger runs the
    float and the quantized op side by side. `rmse_per_scale` is the RMS error in quantization
    steps (0.29 is the floor of rounding alone); larger means the layer's range or calibration
    hurts. The first `samples` calibration samples are compared."""
    return _layer_rows(_debugger(saved_model_dir, dataset, samples))


def _debugger(saved_model_dir, dataset, samples):
    """TFLite's quantization debugger over the model calibrated on `dataset`, comparing on its
    first `samples` samples."""
    import itertools

    import tensorflow as tf

    def debug_dataset():
        return itertools.islice(dataset(), samples)

    return tf.lite.experimental.QuantizationDebugger(
        converter=converter(saved_model_dir, "int8_selective", dataset),
        debug_dataset=debug_dataset,
    )


def _layer_rows(debugger):
    """`layer_errors`' rows of a `_debugger`."""
    debugger.run()
    text = io.StringIO()
    debugger.layer_statistics_dump(text)
    rows = []
    for row in csv.DictReader(io.StringIO(text.getvalue())):
        scale = float(row["scale"])
        mse = float(row["mean_squared_error"])
        rows.append(
            {
                "op_name": row["op_name"],
                "tensor_name": row["tensor_name"],
                "scale": scale,
                "range": 255 * scale,
                "rmse": math.sqrt(mse),
                "rmse_per_scale": math.sqrt(mse) / scale if scale else float("inf"),
                "max_abs_error": float(row["max_abs_error"]),
            }
        )
    return sorted(rows, key=lambda row: row["rmse_per_scale"], reverse=True)


def sensitivity_ranking(model, dataset, samples=16, calibration=None):
    """Names of `model`'s layers, those whose int8 rounding alone changes the output most
    first: simulated in Keras (`int8_simulation`) with ranges measured over the calibration
    `dataset` (its samples decoded back to the Keras model's float input), on its first
    `samples` samples (`calibration`: what `calibration_ranges` answered, when measured already)."""
    from keras_resunet.int8_simulation import layer_sensitivity

    ranges, batches = calibration or calibration_ranges(model, dataset)
    return [name for name, _ in layer_sensitivity(model, ranges, batches[:samples])]


def calibration_ranges(model, dataset):
    """(every layer's output range over the calibration `dataset`, as the converter measures
    it, for `int8_simulation`; the samples decoded back to the Keras model's float input)."""
    from keras_resunet.calibration import Codec
    from keras_resunet.int8_simulation import activation_ranges

    batches = [Codec("float32").decode(sample[0]) for sample in dataset()]
    return activation_ranges(model, batches), batches


def tensors_of(layers, names):
    """The tensors of the debugger's `layers` rows that Keras layers `names` computed: TFLite
    names a tensor by the ops fused into it, each as `model/<layer>_<n>/<op>`."""
    import re

    patterns = [re.compile(rf"(^|[/;]){re.escape(name)}(_\d+)?/") for name in names]
    return [
        row["tensor_name"]
        for row in layers
        if any(pattern.search(row["tensor_name"]) for pattern in patterns)
    ]
