"""Run exported artifacts in their real runtimes behind one callable: float32 NHWC in, out.

SavedModel runs in TensorFlow, `.tflite` in the LiteRT interpreter (`ai-edge-litert`, XNNPACK
is its default CPU delegate), `.onnx` in ONNX Runtime, `.keras` through Keras `predict`.
"""

from pathlib import Path

import numpy as np

from keras_resunet.export.inputs import INPUT_IMAGE, INPUT_SIGMA, OUTPUT, app_inputs


class Runner:
    """Callable `batch (N, H, W, C) float32 -> restored batch` for one artifact (uint8 batches
    pass as uint8, for artifacts with integer I/O).

    An artifact with the named inputs `image` and `sigma` (an exported noise-map model) takes
    either a dict of them or a batch laid out as the Keras model takes it, the noise level as
    its last channel (`inputs.app_inputs` splits it)."""

    def __init__(self, path, threads=None):
        self.path = Path(path)
        self.threads = threads
        self.kind = _kind(self.path)
        self.input_names, self._run = getattr(self, f"_load_{self.kind}")()

    def __call__(self, batch):
        if isinstance(batch, dict):
            inputs = batch
        elif INPUT_SIGMA in self.input_names:
            inputs = app_inputs(batch)
        else:
            inputs = {self.input_names[0]: batch}
        return self._run({name: _contiguous(value) for name, value in inputs.items()})

    def _load_keras(self):
        from keras_resunet.denoisers import load_model

        model = load_model(self.path)
        return [INPUT_IMAGE], lambda inputs: model.predict(inputs[INPUT_IMAGE], verbose=0)

    def _load_savedmodel(self):
        import tensorflow as tf

        function = tf.saved_model.load(str(self.path)).signatures["serving_default"]
        names = list(function.structured_input_signature[1])

        def run(inputs):
            outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
            return outputs.get(OUTPUT, next(iter(outputs.values()))).numpy()

        return names, run

    def _load_tflite(self):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
        signatures = interpreter.get_signature_list()
        if signatures:  # named inputs; the runner resizes them to each batch
            key = next(iter(signatures))
            runner = interpreter.get_signature_runner(key)
            names = list(signatures[key]["inputs"])

            def run(inputs):
                outputs = runner(**inputs)
                return outputs.get(OUTPUT, next(iter(outputs.values()))).copy()

            return names, run
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]
        state = {"shape": None}

        def run_single(inputs):
            (batch,) = inputs.values()
            if state["shape"] != batch.shape:
                interpreter.resize_tensor_input(input_index, batch.shape, strict=True)
                interpreter.allocate_tensors()
                state["shape"] = batch.shape
            interpreter.set_tensor(input_index, batch)
            interpreter.invoke()
            return interpreter.get_tensor(output_index).copy()

        return [INPUT_IMAGE], run_single

    def _load_onnx(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        runtime = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        names = [value.name for value in runtime.get_inputs()]
        return names, lambda inputs: runtime.run(None, inputs)[0]


def _contiguous(value):
    value = np.asarray(value)
    return np.ascontiguousarray(value, dtype=np.uint8 if value.dtype == np.uint8 else np.float32)


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
        names = [value.name for value in runtime.get_inputs()]
        inputs = app_inputs(batch) if INPUT_SIGMA in names else {names[0]: batch}
        inputs = {name: _contiguous(value) for name, value in inputs.items()}
        for _ in range(runs):
            runtime.run(None, inputs)
        events = json.loads(Path(runtime.end_profiling()).read_text())
    totals = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0) + event["dur"]
    total = sum(totals.values()) or 1
    return {op: round(t / total, 3) for op, t in sorted(totals.items(), key=lambda kv: -kv[1])}
