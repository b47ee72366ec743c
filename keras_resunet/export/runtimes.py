"""Run exported artifacts in their real runtimes behind one callable: float32 NHWC in, out.

SavedModel runs in TensorFlow, `.tflite` in the LiteRT interpreter (`ai-edge-litert`, XNNPACK
is its default CPU delegate), `.onnx` in ONNX Runtime, `.keras` through Keras `predict`.
"""

from pathlib import Path

import numpy as np


class Runner:
    """Callable `batch (N, H, W, C) float32 -> restored batch` for one artifact (uint8 batches
    pass as uint8, for artifacts with integer I/O)."""

    def __init__(self, path, threads=None):
        self.path = Path(path)
        self.threads = threads
        self.kind = _kind(self.path)
        self._run = getattr(self, f"_load_{self.kind}")()

    def __call__(self, batch):
        dtype = np.uint8 if np.asarray(batch).dtype == np.uint8 else np.float32
        return self._run(np.ascontiguousarray(batch, dtype=dtype))

    def _load_keras(self):
        from keras_resunet.denoisers import load_model

        model = load_model(self.path)
        return lambda batch: model.predict(batch, verbose=0)

    def _load_savedmodel(self):
        import tensorflow as tf

        function = tf.saved_model.load(str(self.path)).signatures["serving_default"]
        return lambda batch: next(iter(function(tf.constant(batch)).values())).numpy()

    def _load_tflite(self):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]
        state = {"shape": None}

        def run(batch):
            if state["shape"] != batch.shape:
                interpreter.resize_tensor_input(input_index, batch.shape, strict=True)
                interpreter.allocate_tensors()
                state["shape"] = batch.shape
            interpreter.set_tensor(input_index, batch)
            interpreter.invoke()
            return interpreter.get_tensor(output_index).copy()

        return run

    def _load_onnx(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        runtime = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        name = runtime.get_inputs()[0].name
        return lambda batch: runtime.run(None, {name: batch})[0]


def _kind(path):
    if path.suffix == ".keras":
        return "keras"
    if path.suffix == ".tflite":
        return "tflite"
    if path.suffix == ".onnx":
        return "onnx"
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "savedmodel"
    raise ValueError(f"Not a runnable artifact (.keras, .tflite, .onnx or SavedModel): {path}")


def onnx_time_by_op(path, batch, threads=None, runs=3):
    """Share of ONNX Runtime's kernel time per op type over `runs` runs, from its profiler."""
    import json
    import tempfile

    import onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        runtime = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        name = runtime.get_inputs()[0].name
        for _ in range(runs):
            runtime.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})
        events = json.loads(Path(runtime.end_profiling()).read_text())
    totals = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0) + event["dur"]
    total = sum(totals.values()) or 1
    return {op: round(t / total, 3) for op, t in sorted(totals.items(), key=lambda kv: -kv[1])}
