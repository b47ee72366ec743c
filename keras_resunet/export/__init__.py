"""Export for deployment: SavedModel, TFLite (float32 or quantized) and ONNX, each verified.

- `exporter`: `export_model(model, out_dir, ExportOptions(...))`, the whole export;
- `inputs`: what an artifact takes (noise-level map channel, uint8 I/O wrapper);
- `quantization`: TFLite quantization variants, calibration data, per-layer error;
- `int8_simulation`: int8 rounding simulated in Keras (quantization-aware training, sensitivity);
- `runtimes`: each artifact run in its real runtime behind one callable;
- `output_folder`: what an export may replace, and how it lands;
- `benchmark`: speed of Keras `predict` and every exported runtime.
"""

from keras_resunet.export.exporter import (
    FORMATS,
    ExportError,
    ExportOptions,
    export_model,
    load_keras_model,
    parse_size,
)

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportOptions",
    "export_model",
    "load_keras_model",
    "parse_size",
]
