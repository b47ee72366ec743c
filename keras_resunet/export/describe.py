"""Exported files that describe themselves: names, ranges and the model's purpose inside them.

TFLite: the tensors and the signature are named `image`, `sigma`, `restored`, the model's
description is set, and a TFLite metadata entry (`TFLITE_METADATA`, the metadata schema's
`ModelMetadata` flatbuffer, file identifier "M001") gives the name, description, version,
author, licence and, per tensor, its description, content (RGB or grayscale image, or a
feature), the normalization an app applies to 0-255 pixels and the value range. Android
Studio's model binding and the TFLite Support / Task libraries read that entry. The flatbuffer is
written here with the `flatbuffers` builder (no tflite-support package works with this
toolchain) and read back by `read_tflite_metadata`.

ONNX: the dynamic dimensions are named `batch`, `height`, `width`, the output is `restored`, and
`metadata_props` holds the same description as key-value pairs.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_resunet.export.inputs import INPUT_IMAGE, INPUT_SIGMA, OUTPUT

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
METADATA_PARSER_VERSION = "1.0.0"
# the metadata schema's union tags and enums used here
_FEATURE, _IMAGE = 1, 2  # ContentProperties
_NORMALIZATION = 1  # ProcessUnitOptions
_RGB, _GRAYSCALE = 1, 2  # ColorSpaceType


@dataclass(frozen=True)
class TensorInfo:
    name: str
    description: str
    channels: int | None = None  # an image's channel count; None for a feature (sigma)
    low: float = 0.0
    high: float = 1.0
    scale: float = 1.0  # the app divides 0-255 pixels by this (255 for float32 images)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    version: str
    author: str
    license: str
    inputs: tuple
    outputs: tuple

    def properties(self):
        """The description as flat string pairs (ONNX `metadata_props`, sidecars)."""
        props = {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "author": self.author,
            "license": self.license,
        }
        for tensor in (*self.inputs, *self.outputs):
            props[f"tensor.{tensor.name}"] = tensor.description
            props[f"tensor.{tensor.name}.range"] = f"{tensor.low:g}..{tensor.high:g}"
        return props


def colour_name(channels):
    """How an image of `channels` channels is named to an app: RGB, gray, or the count."""
    return {3: "RGB", 1: "gray"}.get(channels, f"{channels}-channel")


def model_info(name, version, channels, noise_map, io, description):
    """What an exported restoration model is and how an app feeds it."""
    uint8 = io == "uint8"
    high, scale = (255.0, 1.0) if uint8 else (1.0, 255.0)
    colour = colour_name(channels)
    kind = "uint8 pixels 0-255" if uint8 else "float32 in [0, 1] (pixels / 255)"
    inputs = [
        TensorInfo(
            INPUT_IMAGE,
            f"{colour} image to restore, NHWC [batch, height, width, {channels}], {kind}",
            channels,
            0.0,
            high,
            scale,
        )
    ]
    if noise_map:
        inputs.append(
            TensorInfo(
                INPUT_SIGMA,
                "noise standard deviation of each image, shape [batch, 1], float32, on the "
                f"image's scale ({'0-255' if uint8 else '0-1'}); 0 leaves noise in",
                None,
                0.0,
                high,
                1.0,
            )
        )
    outputs = [
        TensorInfo(
            OUTPUT,
            f"restored {colour} image, the input's shape, {kind}",
            channels,
            0.0,
            high,
            scale,
        )
    ]
    return ModelInfo(
        name, description, version, "keras_resunet", "MIT", tuple(inputs), tuple(outputs)
    )


def describe_tflite(data, info):
    """`data` (.tflite bytes) with named tensors and signature, a description and metadata."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    model.description = info.description.encode()
    graph = model.subgraphs[0]
    names = [tensor.name for tensor in info.inputs]
    if len(graph.inputs) != len(names) or len(graph.outputs) != 1:
        raise ValueError(f"expected inputs {names} and one output, found {len(graph.inputs)} in")
    signature = (model.signatureDefs or [None])[0]
    if signature is not None:  # its entries carry the names apps call (get_signature_runner)
        by_index = {entry.tensorIndex: entry for entry in signature.inputs}
        order = [by_index[index].name.decode() for index in graph.inputs]
        if sorted(order) != sorted(names):
            raise ValueError(f"signature inputs {order} are not {names}")
        names = order
        signature.outputs[0].name = OUTPUT.encode()
    for index, name in zip(graph.inputs, names):
        graph.tensors[index].name = name.encode()
    graph.tensors[graph.outputs[0]].name = OUTPUT.encode()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(_metadata_flatbuffer(info, names), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != entry.name] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _metadata_flatbuffer(info, input_order):
    import flatbuffers

    builder = flatbuffers.Builder(1024)

    def string(text):
        return builder.CreateString(text)

    def offsets(items):
        builder.StartVector(4, len(items), 4)
        for item in reversed(items):
            builder.PrependUOffsetTRelative(item)
        return builder.EndVector()

    def floats(values):
        builder.StartVector(4, len(values), 4)
        for value in reversed(values):
            builder.PrependFloat32(value)
        return builder.EndVector()

    def table(fields):  # fields: (slot, kind, value) in slot order
        builder.StartObject(max(slot for slot, _, _ in fields) + 1)
        for slot, kind, value in fields:
            if kind == "offset":
                builder.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "ubyte":
                builder.PrependUint8Slot(slot, value, 0)
            else:
                builder.PrependInt8Slot(slot, value, 0)
        return builder.EndObject()

    def tensor(item):
        name, description = string(item.name), string(item.description)
        if item.channels is None:  # FeatureProperties has no fields
            builder.StartObject(0)
            properties, kind = builder.EndObject(), _FEATURE
        else:
            space = _GRAYSCALE if item.channels == 1 else _RGB
            properties, kind = table([(0, "byte", space)]), _IMAGE
        content = table([(0, "ubyte", kind), (1, "offset", properties)])
        mean, std = floats([0.0]), floats([item.scale])
        normalization = table([(0, "offset", mean), (1, "offset", std)])
        unit = table([(0, "ubyte", _NORMALIZATION), (1, "offset", normalization)])
        units = offsets([unit])
        high, low = floats([item.high]), floats([item.low])
        stats = table([(0, "offset", high), (1, "offset", low)])
        return table(
            [
                (0, "offset", name),
                (1, "offset", description),
                (3, "offset", content),
                (4, "offset", units),
                (5, "offset", stats),
            ]
        )

    by_name = {item.name: item for item in info.inputs}
    inputs = offsets([tensor(by_name[name]) for name in input_order])
    outputs = offsets([tensor(item) for item in info.outputs])
    graph_name, graph_description = string(info.name), string(info.description)
    graph = table(
        [(0, "offset", graph_name), (1, "offset", graph_description), (2, "offset", inputs),
         (3, "offset", outputs)]
    )  # fmt: skip
    graphs = offsets([graph])
    fields = [string(text) for text in (info.name, info.description, info.version)]
    author, licence, parser = (
        string(info.author),
        string(info.license),
        string(METADATA_PARSER_VERSION),
    )
    root = table(
        [(0, "offset", fields[0]), (1, "offset", fields[1]), (2, "offset", fields[2]),
         (3, "offset", graphs), (4, "offset", author), (5, "offset", licence),
         (7, "offset", parser)]
    )  # fmt: skip
    builder.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def read_tflite_metadata(path_or_bytes):
    """The TFLite metadata of a `.tflite` file as a dict (None when it has none): name,
    description, version, author, license, and per input / output tensor its name,
    description, content ("image" with its colour space, or "feature"), normalization
    mean / std and value range."""
    from tensorflow.lite.tools import flatbuffer_utils

    data = path_or_bytes
    if not isinstance(data, (bytes, bytearray)):
        data = Path(data).read_bytes()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for entry in model.metadata or []:
        if entry.name.decode() == METADATA_NAME:
            return _read_metadata(bytes(model.buffers[entry.buffer].data))
    return None


def _read_metadata(buffer):
    from flatbuffers import encode, number_types, packer, table

    if buffer[4:8] != METADATA_IDENTIFIER:
        raise ValueError("not a TFLite metadata flatbuffer (identifier M001 missing)")

    def root():
        return table.Table(buffer, encode.Get(packer.uoffset, buffer, 0))

    def offset(tab, slot):
        return tab.Offset(4 + 2 * slot)

    def text(tab, slot):
        at = offset(tab, slot)
        return tab.String(at + tab.Pos).decode() if at else None

    def child(tab, slot):
        at = offset(tab, slot)
        return table.Table(buffer, tab.Indirect(at + tab.Pos)) if at else None

    def children(tab, slot):
        at = offset(tab, slot)
        if not at:
            return []
        start = tab.Vector(at)
        return [table.Table(buffer, tab.Indirect(start + 4 * i)) for i in range(tab.VectorLen(at))]

    def numbers(tab, slot):
        at = offset(tab, slot)
        if not at:
            return []
        start = tab.Vector(at)
        flags = number_types.Float32Flags
        return [tab.Get(flags, start + 4 * i) for i in range(tab.VectorLen(at))]

    def scalar(tab, slot, flags):
        at = offset(tab, slot)
        return tab.Get(flags, at + tab.Pos) if at else 0

    def tensor(tab):
        described = {"name": text(tab, 0), "description": text(tab, 1)}
        content = child(tab, 3)
        kind = scalar(content, 0, number_types.Uint8Flags) if content else 0
        if kind == _IMAGE:
            space = scalar(child(content, 1), 0, number_types.Int8Flags)
            described["content"] = {_RGB: "RGB image", _GRAYSCALE: "grayscale image"}.get(
                space, "image"
            )
        elif kind == _FEATURE:
            described["content"] = "feature"
        for unit in children(tab, 4):
            if scalar(unit, 0, number_types.Uint8Flags) == _NORMALIZATION:
                options = child(unit, 1)
                described["normalization"] = {
                    "mean": numbers(options, 0),
                    "std": numbers(options, 1),
                }
        stats = child(tab, 5)
        if stats:
            described["max"], described["min"] = numbers(stats, 0), numbers(stats, 1)
        return described

    model = root()
    graphs = children(model, 3)
    return {
        "name": text(model, 0),
        "description": text(model, 1),
        "version": text(model, 2),
        "author": text(model, 4),
        "license": text(model, 5),
        "min_parser_version": text(model, 7),
        "inputs": [tensor(t) for t in children(graphs[0], 2)] if graphs else [],
        "outputs": [tensor(t) for t in children(graphs[0], 3)] if graphs else [],
    }


def describe_onnx(path, info):
    """Names the ONNX file's dynamic dimensions and output and writes `info` into its
    `metadata_props`, in place."""
    import onnx

    model = onnx.load(str(path))
    dims = {0: "batch", 1: "height", 2: "width"}
    for value in (*model.graph.input, *model.graph.output):
        shape = value.type.tensor_type.shape.dim
        for axis, dim in enumerate(shape):
            if not dim.HasField("dim_value") and (len(shape) == 4 or axis == 0):
                dim.dim_param = dims.get(axis, f"dim{axis}")
    old = model.graph.output[0].name
    if old != OUTPUT:
        for node in model.graph.node:
            node.output[:] = [OUTPUT if name == old else name for name in node.output]
        model.graph.output[0].name = OUTPUT
    del model.metadata_props[:]
    for key, value in info.properties().items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = info.description
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
