"""`export_model`: a trained `.keras` model to SavedModel, TFLite (float32 or quantized) and ONNX.

The TFLite quantization variants are described in `keras_resunet.export.quantization`; the
named inputs (`image`, and `sigma` for a noise-map model) in `keras_resunet.export.inputs`.

Every artifact is verified in its real runtime before the export is kept: float32 artifacts must
match Keras within `calibration.FLOAT_TOLERANCE` (max abs difference) on random inputs of several
sizes and on real images, or the export fails; quantized artifacts report their PSNR change on
test images.
Everything is written to a temporary folder that is renamed into place at the end, so a failed
export leaves nothing behind. An existing output folder is replaced only when it is an earlier
export (it holds `export_report.json` and nothing the report does not list) and `overwrite` is
set; anything else (a folder with other files, the current folder or one above it) is refused.

TFLite files contain builtin ops only (no Flex / SELECT_TF_OPS), so they run on mobile runtimes
without the Flex delegate. ONNX goes through Keras' own `model.export(format="onnx")` (tf2onnx's
`from_function` underneath), since `tf2onnx.convert.from_keras` breaks on Keras 3 models.
"""

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from keras_resunet import __version__, data, degradations, pretrained
from keras_resunet.calibration import (
    CALIBRATION_SIGMAS,
    Codec,
    model_input,
    representative,
    takes_noise_map,
)
from keras_resunet.export import quantization as quantization_variants
from keras_resunet.export.describe import (
    colour_name,
    describe_onnx,
    describe_tflite,
    model_info,
)
from keras_resunet.export.inputs import INPUT_IMAGE, INPUT_SIGMA, app_inputs, deployment_model
from keras_resunet.export.output_folder import (
    REPORT,
    check_output_folder,
    make_readable,
    move_into_place,
)
from keras_resunet.export.quantization import CALIBRATED, QUANTIZATIONS
from keras_resunet.export.runtimes import Runner

FORMATS = ("savedmodel", "tflite", "onnx")
IOS = ("float32", "uint8")
CHECK_SIZES = ((1, 32, 32), (1, 37, 53), (2, 24, 40))
ONNX_OPSET = 18
_TOOLS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")


class ExportError(RuntimeError):
    """A conversion failed or an artifact does not match the Keras model."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export.

    Args:
        formats: subset of FORMATS.
        quantizations: subset of QUANTIZATIONS; they apply to TFLite ("none" = float32).
        fixed_size: optional (height, width) for TFLite, for delegates that need static shapes
            (batch 1); SavedModel and ONNX stay dynamic.
        overwrite: replace an existing output folder that holds an earlier export.
        sigma: noise level of the check images for the PSNR report and of the int8
            calibration crops when the model's own degradation is unknown.
        degradation: what the model restores (check images and calibration crops get it);
            default: the shipped model's or the run's own, else Gaussian noise at `sigma`.
        io: "float32" (NHWC in [0, 1]) or "uint8" (0-255 pixels in and out, the scaling,
            clipping and rounding inside the model: what an app feeding camera bytes wants;
            a noise-map model's `sigma` input is then on the 0-255 scale too). Every file
            takes the inputs of `inputs.deployment_model` and describes them (`describe`).
        noise_bands: for a noise-level-map model, ((low, high), ...) sigma bands on [0, 1]:
            each calibrated TFLite variant is written once per band, calibrated on crops noisy
            at levels across that band only (`quantization.NOISE_BANDS` is a good choice);
            the app feeds each file the images whose sigma lies in its band.
        float_layers: layers int8_selective keeps in float (default `quantization.FLOAT_LAYERS`).
    """

    formats: tuple = FORMATS
    quantizations: tuple = ("none",)
    fixed_size: tuple | None = None
    overwrite: bool = False
    sigma: float = 0.1
    io: str = "float32"
    degradation: object = None
    noise_bands: tuple = ()
    float_layers: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "quantizations", tuple(self.quantizations))
        bands = tuple(quantization_variants.check_noise_band(b) for b in self.noise_bands)
        object.__setattr__(self, "noise_bands", bands)
        if len({_band_suffix(band) for band in bands}) < len(bands):
            raise ValueError(f"Noise bands must differ. Received: {self.noise_bands}")
        for values, valid, what in (
            (self.formats, FORMATS, "format"),
            (self.quantizations, QUANTIZATIONS, "quantization"),
        ):
            unknown = [value for value in values if value not in valid]
            if unknown or not values:
                raise ValueError(f"Unknown {what} {unknown or values}. Valid: {list(valid)}")
        if self.io not in IOS:
            raise ValueError(f"Unknown io {self.io!r}. Valid: {list(IOS)}")
        calibrated = [q for q in self.quantizations if q in CALIBRATED]
        if self.io == "uint8" and calibrated and "tflite" in self.formats:
            # the converter's full-integer pass around the uint8 casts loses about 10 dB
            raise ValueError(
                f"{calibrated[0]} quantization with uint8 I/O is not supported (int8 loses about "
                "10 dB): use --quantize fp16 or dynamic with --io uint8, or "
                f"{calibrated[0]} with float32 I/O"
            )
        if self.fixed_size is not None:
            height, width = self.fixed_size
            if height < 1 or width < 1:
                raise ValueError(f"`fixed_size` must be positive. Received: {self.fixed_size}")
        if self.noise_bands and not (calibrated and "tflite" in self.formats):
            raise ValueError(
                "noise bands choose the calibration of int8 TFLite files: they need "
                f"--quantize {' or '.join(CALIBRATED)} and the tflite format"
            )
        if self.float_layers is not None:
            if not (isinstance(self.float_layers, int) and self.float_layers >= 1):
                raise ValueError(
                    f"`float_layers` must be a positive int. Received: {self.float_layers!r}"
                )
            if "int8_selective" not in self.quantizations:
                raise ValueError("float layers are for --quantize int8_selective")


@dataclass
class Artifact:
    path: str
    format: str
    quantization: str
    checks: dict = field(default_factory=dict)
    noise_band: list | None = None  # the sigma band an int8 file was calibrated on


def parse_size(text):
    """'256x320' -> (256, 320)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise ValueError(f"Size must look like HxW (e.g. 256x256). Received: {text!r}") from error
    return height, width


def load_keras_model(spec):
    """Loads a restoration model to export: a `.keras` path or a shipped model name.

    Raises:
        FileNotFoundError: no such file or shipped model.
        ValueError: not a loadable Keras model, or not an image-to-image restoration model.
    """
    from keras_resunet import pretrained
    from keras_resunet.denoisers import KerasDenoiser, load_model

    model = load_model(pretrained.resolve(spec))
    KerasDenoiser(model)  # refuses classifiers and other models that are not image to image
    return model


# Modules each format's conversion and check need beyond TensorFlow (the `export` extra)
FORMAT_MODULES = {
    "savedmodel": (),
    "tflite": ("ai_edge_litert",),
    "onnx": ("tf2onnx", "onnx", "onnxruntime"),
}


def check_tools(formats):
    """Raises ModuleNotFoundError (its `name` the first missing module) before any work when a
    requested format needs a module that is not installed."""
    import importlib.util

    for name in (module for fmt in formats for module in FORMAT_MODULES.get(fmt, ())):
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"exporting needs the `{name}` module", name=name)


def model_degradation(spec):
    """The degradation a model restores: a shipped model's own (a noise-level-map model: at
    sigma 0.1), a run folder's `model.keras` or `best.keras` by its config (a noise range as
    trained); None when unknown."""
    entry = pretrained.entry_for(spec)
    if entry is not None:
        return entry.degradation()
    path = Path(spec)
    if path.name in ("model.keras", "best.keras") and (path.parent / "config.json").is_file():
        from keras_resunet.training.run_folder import read_config

        return read_config(path.parent).degradation(clipped=False)
    return None


def export_model(
    model_path, out_dir, options=ExportOptions(), check_images=(), log=print, check_source=""
):
    """Exports, verifies and describes every requested artifact.

    Args:
        model_path: a `.keras` model file or a shipped model name (image in, image out, NHWC
            in [0, 1]).
        out_dir: folder to create with the artifacts and their JSON sidecars.
        options: `ExportOptions`.
        check_images: clean float32 (H, W, C) images in [0, 1] for the real-image checks, the
            PSNR report and the int8 calibration (required for int8).
        check_source: where `check_images` came from, recorded in the report and sidecars.
        log: where progress lines go.

    Returns:
        The report dict (also written to `out_dir/export_report.json`).

    Raises:
        FileNotFoundError, ValueError: bad model path or options.
        FileExistsError: `out_dir` exists and `options.overwrite` is False.
        ExportError: a conversion failed or a float32 artifact missed parity.
    """
    from keras_resunet import pretrained

    out_dir = Path(out_dir)
    check_tools(options.formats)
    model_path = pretrained.resolve(model_path)
    check_output_folder(out_dir, options.overwrite, model_path)
    calibrated = [q for q in options.quantizations if q in CALIBRATED]
    if calibrated and "tflite" in options.formats and not check_images:
        raise ValueError(f"{calibrated[0]} quantization needs representative images")
    model = load_keras_model(model_path)
    if options.noise_bands and not takes_noise_map(model):
        raise ValueError(
            f"{model_path} has no noise-level-map input: noise bands are for noise-map models "
            "(a fixed-level model is calibrated at its own level)"
        )
    degradation = (
        options.degradation
        or model_degradation(model_path)
        or degradations.GaussianNoise(options.sigma)
    )
    if degradations.noise_level(degradation) is None:  # a noise range (a noise-map run's)
        degradation = degradations.GaussianNoise(options.sigma)
    noise_map = takes_noise_map(model)
    image_channels = model.output_shape[-1]
    check_images = [image for image in check_images if image.shape[-1] == image_channels]
    codec = Codec(options.io)
    info = model_info(
        f"keras_resunet {Path(model_path).stem}",
        __version__,
        image_channels,
        noise_map,
        options.io,
        "Image restoration (" + _purpose(degradation, noise_map) + ") by a residual UNet: "
        "pass the image" + (" and its noise level" if noise_map else "") + ", read `restored`.",
    )
    raw, model = model, deployment_model(model, options.io)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        make_readable(scratch)
        artifacts = _write_artifacts(
            model, raw, scratch, options, check_images, degradation, codec, info, log
        )
        references = {None: _Reference(model, raw, check_images, degradation, codec)}
        for band in options.noise_bands:  # checked in the middle of the band
            middle = degradations.GaussianNoise(sum(band) / 2)
            references[band] = _Reference(model, raw, check_images, middle, codec)
        for artifact in artifacts:
            reference = references[artifact.noise_band and tuple(artifact.noise_band)]
            artifact.checks = _verify(artifact, scratch, reference, options, log)
        report = {
            # the file's name, not where it lay on the exporting machine
            "source_model": Path(model_path).name,
            "check_images": check_source,
            "source_sha256": _sha256(model_path),
            "tools": {tool: _version(tool) for tool in _TOOLS},
            "float_tolerance": codec.tolerance,
            "io": options.io,
            "onnx_opset": ONNX_OPSET,
            "description": info.properties(),
            "artifacts": [asdict(artifact) for artifact in artifacts],
        }
        for artifact in artifacts:
            sidecar = {
                **{k: v for k, v in report.items() if k != "artifacts"},
                **asdict(artifact),
                "inputs": _input_spec(artifact, image_channels, options, noise_map),
                "output": {
                    "name": info.outputs[0].name,
                    "description": info.outputs[0].description,
                },
            }
            (scratch / f"{artifact.path}.json").write_text(json.dumps(sidecar, indent=2))
        (scratch / REPORT).write_text(json.dumps(report, indent=2))
        move_into_place(scratch, out_dir)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return report


def _signature(raw, io, fixed_size=None):
    """The export signature of `deployment_model(raw, io)`: named `image` (and `sigma`)."""
    import tensorflow as tf

    batch, (height, width) = (1, fixed_size) if fixed_size else (None, (None, None))
    dtype = tf.uint8 if io == "uint8" else tf.float32
    image = tf.TensorSpec((batch, height, width, raw.output_shape[-1]), dtype, name=INPUT_IMAGE)
    if not takes_noise_map(raw):
        return [image]
    return [{INPUT_IMAGE: image, INPUT_SIGMA: tf.TensorSpec((batch, 1), tf.float32, INPUT_SIGMA)}]


def _write_artifacts(model, raw, folder, options, check_images, degradation, codec, info, log):
    artifacts = []
    dynamic_spec = _signature(raw, options.io)
    if "savedmodel" in options.formats:
        log("writing SavedModel ...")
        model.export(
            str(folder / "savedmodel"),
            format="tf_saved_model",
            verbose=False,
            input_signature=dynamic_spec,
        )
        artifacts.append(Artifact("savedmodel", "savedmodel", "none"))
    if "tflite" in options.formats:
        spec = _signature(raw, options.io, options.fixed_size)
        with tempfile.TemporaryDirectory() as source:
            model.export(source, format="tf_saved_model", verbose=False, input_signature=spec)
            for quantization in options.quantizations:
                stem = f"model_{'float32' if quantization == 'none' else quantization}"
                banded = quantization in CALIBRATED and options.noise_bands
                for band in options.noise_bands if banded else [None]:
                    name = f"{stem}{_band_suffix(band)}.tflite"
                    log(f"converting TFLite ({quantization}{_band_suffix(band)}) ...")
                    data = _convert_tflite(
                        source, quantization, check_images, options.fixed_size, raw,
                        degradation, codec, sigmas=band and quantization_variants.band_sigmas(band),
                        float_layers=options.float_layers,
                    )  # fmt: skip
                    (folder / name).write_bytes(describe_tflite(data, info))
                    band = band and list(band)
                    artifacts.append(Artifact(name, "tflite", quantization, noise_band=band))
    if "onnx" in options.formats:
        log("converting ONNX ...")
        try:
            model.export(
                str(folder / "model.onnx"),
                format="onnx",
                verbose=False,
                input_signature=dynamic_spec,
                opset_version=ONNX_OPSET,
            )
        except Exception as error:
            raise ExportError(f"ONNX conversion failed: {error}") from error
        describe_onnx(folder / "model.onnx", info)
        artifacts.append(Artifact("model.onnx", "onnx", "none"))
    return artifacts


def _band_suffix(band):
    return "" if band is None else f"_sigma{band[0]:.3g}-{band[1]:.3g}"


def _convert_tflite(
    saved_model_dir,
    quantization,
    check_images,
    fixed_size,
    raw,
    degradation,
    codec,
    sigmas=None,
    float_layers=None,
):
    """`raw`: the Keras model inside the exported one (its layers choose int8_selective's float
    layers; the calibration samples are laid out as it takes them)."""
    dataset = named = None
    noise_map = takes_noise_map(raw)
    if quantization in quantization_variants.CALIBRATED:
        dataset = representative(
            check_images,
            fixed_size,
            noise_map,
            codec,
            degradation,
            sigmas=sigmas or CALIBRATION_SIGMAS,
        )
        named = dataset
        if noise_map:  # the exported model's inputs, in its order (names sorted: image, sigma)

            def named():
                for sample in dataset():
                    inputs = app_inputs(sample[0])
                    yield [inputs[INPUT_IMAGE], inputs[INPUT_SIGMA]]

    ranking = None
    if quantization == "int8_selective":  # float I/O (ExportOptions refuses uint8 with it)
        ranking = quantization_variants.sensitivity_ranking(raw, dataset)
    try:
        return quantization_variants.convert(
            saved_model_dir, quantization, named, float_layers=float_layers, ranking=ranking
        )
    except Exception as error:
        raise ExportError(f"TFLite conversion ({quantization}) failed: {error}") from error


class _Reference:
    """The Keras model's outputs, computed once, for comparing every artifact."""

    def __init__(self, model, raw, check_images, degradation, codec):
        self.model = model  # the exported (deployment) model; batches are laid out as `raw`'s
        self.noise_map = takes_noise_map(raw)
        self.channels = raw.input_shape[-1]
        self.codec = codec
        # whole images degraded, then their centres cut: a blurred crop would wrap its edges
        degraded, clean = data.evaluation_pairs(check_images[:4], degradation, seed=0)
        self.clean = [_centre(image, 256) for image in clean]
        degraded = [_centre(image, 256) for image in degraded]
        sigma = degradations.noise_level(degradation)
        self.degraded = [model_input(d, sigma, self.noise_map) for d in degraded]
        self.cache = {}

    def keras(self, batch):
        """The Keras model's output for a float32 batch in [0, 1], as float32."""
        batch = self.codec.encode(batch)
        key = (batch.shape, hash(batch.tobytes()))
        if key not in self.cache:
            inputs = app_inputs(batch) if self.noise_map else batch
            self.cache[key] = self.codec.decode(self.model.predict(inputs, verbose=0))
        return self.cache[key]


def _centre(image, size):
    top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
    return image[top : top + size, left : left + size]


def _check_batches(channels, fixed_size):
    rng = np.random.default_rng(1)
    sizes = [(1, *fixed_size)] if fixed_size else CHECK_SIZES
    return [rng.random((n, h, w, channels), dtype=np.float32) for n, h, w in sizes]


def _verify(artifact, folder, reference, options, log):
    from keras_resunet.metrics import psnr

    runner = Runner(folder / artifact.path)
    channels = reference.channels
    fixed = options.fixed_size if artifact.format == "tflite" else None
    batches = _check_batches(channels, fixed)
    batches += [d[None] for d in reference.degraded if not fixed or d.shape[:2] == tuple(fixed)]
    codec = reference.codec

    def run(batch):
        return codec.decode(runner(codec.encode(batch)))

    differences = []
    for batch in batches:
        expected = reference.keras(batch)
        actual = run(batch)
        if actual.shape != expected.shape:
            raise ExportError(
                f"{artifact.path}: output shape {actual.shape} != Keras {expected.shape}"
            )
        differences.append(float(np.max(np.abs(actual - expected))))
    checks = {
        "max_abs_diff": max(differences),
        "input_shapes": [list(b.shape) for b in batches],
    }
    if reference.clean and not fixed:
        keras_psnr = [
            float(psnr(reference.keras(d[None])[0], c))
            for d, c in zip(reference.degraded, reference.clean)
        ]
        artifact_psnr = [
            float(psnr(run(d[None])[0], c)) for d, c in zip(reference.degraded, reference.clean)
        ]
        checks["psnr_keras"] = float(np.mean(keras_psnr))
        checks["psnr_artifact"] = float(np.mean(artifact_psnr))
        checks["psnr_change_db"] = checks["psnr_artifact"] - checks["psnr_keras"]
    log(
        f"  {artifact.path}: max |diff| vs Keras {checks['max_abs_diff']:.2e}"
        + (
            f", PSNR change {checks['psnr_change_db']:+.3f} dB"
            if "psnr_change_db" in checks
            else ""
        )
    )
    if artifact.quantization == "none" and checks["max_abs_diff"] > codec.tolerance:
        raise ExportError(
            f"{artifact.path}: max abs difference {checks['max_abs_diff']:.3g} from the Keras "
            f"model exceeds {codec.tolerance:.3g}"
        )
    return checks


def _input_spec(artifact, channels, options, noise_map):
    """The sidecar's list of named inputs: shape, layout, type and range of each."""
    fixed = artifact.format == "tflite" and options.fixed_size
    batch = 1 if fixed else -1
    uint8 = options.io == "uint8"
    image = {
        "name": INPUT_IMAGE,
        "shape": [batch, *(options.fixed_size if fixed else (-1, -1)), channels],
        "layout": "NHWC",
        "channels": colour_name(channels),
        "dtype": options.io,
        "range": [0, 255] if uint8 else [0.0, 1.0],
    }
    if artifact.noise_band:
        low, high = artifact.noise_band
        image["noise_levels"] = (
            f"calibrated for sigma {low:g} to {high:g} on the [0, 1] scale: give this file the "
            "images whose noise level lies in that band"
        )
    if not noise_map:
        return [image]
    sigma = {
        "name": INPUT_SIGMA,
        "shape": [batch, 1],
        "dtype": "float32",
        "range": [0, 255] if uint8 else [0.0, 1.0],
        "meaning": "the noise standard deviation on the image's scale",
    }
    return [image, sigma]


def _purpose(degradation, noise_map):
    if noise_map:
        return "Gaussian noise of a given level"
    sigma = degradations.noise_level(degradation)
    blurred = degradations.blur_kernel(degradation) is not None
    what = f"Gaussian noise sigma {sigma:g} on [0, 1]" if sigma else "degradation"
    return f"blur and {what}" if blurred else what


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
