"""Export for deployment: SavedModel, TFLite (float32 or quantized) and ONNX, each verified.

- `exporter`: `export_model(model, out_dir, ExportOptions(...))`, the whole export;
- `inputs`: the model as an app calls it (`image`, the noise level `sigma`, `restored`);
- `describe`: TFLite metadata and ONNX metadata props, written and read back;
- `quantization`: TFLite quantization variants, per-layer error;
- `runtimes`: each artifact run in its real runtime behind one callable;
- `output_folder`: what an export may replace, and how it lands;
- `timing`: speed of Keras `predict` and every exported runtime.

Calibration data (`keras_resunet.calibration`) and int8 rounding simulated in Keras
(`keras_resunet.int8_simulation`) sit below this package: quantization-aware training uses them
too. `check_images` is re-exported here: the photos an export is checked and calibrated on.
"""

from keras_resunet.calibration import check_images
from keras_resunet.export.describe import read_tflite_metadata
from keras_resunet.export.exporter import (
    FORMATS,
    ExportError,
    ExportOptions,
    export_model,
    load_keras_model,
    model_degradation,
    parse_size,
)

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportOptions",
    "check_images",
    "export_model",
    "load_keras_model",
    "model_degradation",
    "parse_size",
    "read_tflite_metadata",
]
