"""`resunet denoise`: restore image files and folders, each written in its own mode.

Failures are per file: a missing, corrupt or too-small image is reported by name and the other
files are still restored. Outputs are written atomically, so a failed or interrupted file leaves
nothing behind.
"""

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_resunet import io
from keras_resunet.noise_level import check_sigma, estimate_sigma


@dataclass(frozen=True)
class RestoreOptions:
    """How `restore_files` restores.

    Attributes:
        model: shipped model name, `.keras` path, or classical method ("nlm", "bm3d"); None
            picks the shipped ResUNet for `task`.
        task: "denoise" or "deblur_denoise" (the default model, and the `noisy_demo` degradation).
        sigma: the noise level on the [0, 1] scale for methods that take one (classical methods,
            noise-level-map models); None estimates it per image (`estimate_sigma`). Models
            trained for one level use their own. With `noisy_demo`, the level of the added
            noise (default 0.1).
        tile, overlap: tile side (0 = whole image) and overlap in pixels.
        ensemble: 8-fold flip/rotation self-ensemble.
        noisy_demo: degrade each (clean) input first, then report PSNR before and after.
        seed: seed of the `noisy_demo` degradation (image i uses (seed, i)).
        skip_existing: leave an output that already exists as it is (else it is replaced,
            and the progress line says so).
        operator: a known blur, or blur + downsampling (`keras_resunet.operators.BlurOperator`):
            `resunet deblur` / `upscale` restore through it by plug-and-play (`keras_resunet.pnp`)
            with a noise-level-map model; None denoises.
        iterations: plug-and-play iterations (with `operator`; default
            `pnp.default_iterations`: 8 for a blur, 24 for upscaling).
    """

    model: str | None = None
    task: str = "denoise"
    sigma: float | None = None
    tile: int = 512
    overlap: int = 32
    ensemble: bool = False
    noisy_demo: bool = False
    seed: int = 0
    skip_existing: bool = False
    operator: object = None
    iterations: int | None = None

    def __post_init__(self):
        if self.iterations is not None and (
            not isinstance(self.iterations, int) or self.iterations < 1
        ):
            raise ValueError(f"`iterations` must be an int >= 1. Received: {self.iterations!r}")
        if self.iterations is None and self.operator is not None:
            from keras_resunet.pnp import default_iterations

            object.__setattr__(self, "iterations", default_iterations(self.operator))
        if self.task not in ("denoise", "deblur_denoise"):
            raise ValueError(f"Unknown task {self.task!r}. Valid: denoise, deblur_denoise")
        if self.sigma is not None:
            check_sigma(self.sigma)
        if not isinstance(self.tile, int) or self.tile < 0:
            raise ValueError(f"--tile must be 0 (whole image) or a positive size: {self.tile}")
        if not isinstance(self.overlap, int) or self.overlap < 0:
            raise ValueError(f"--overlap must be >= 0: {self.overlap}")
        if self.tile and self.tile < MIN_TILE:
            raise ValueError(f"--tile must be at least {MIN_TILE} pixels (or 0): {self.tile}")
        if self.tile and self.tile <= 2 * self.overlap:
            raise ValueError(f"--tile ({self.tile}) must exceed twice --overlap ({self.overlap})")

    def degradation(self):
        """What is restored, as one degradation: `task` at `sigma` (the noisy-demo level when
        sigma is None). `noisy_demo` adds it; the model is loaded for it."""
        from keras_resunet import degradations

        default = DEMO_SIGMA if self.operator is None else PNP_DEMO_SIGMA
        level = default if self.sigma is None else self.sigma
        return degradations.make_degradation(self.task, sigma=level)


# Tiles smaller than this hold too little context for the models' receptive field.
MIN_TILE = 32
# Pillow refuses images over ~179 MP as possible decompression bombs; scans can be larger and
# are restored tile by tile, so the limit is raised to what a 24 GB machine can still hold.
MAX_PIXELS = 1_000_000_000
# The noisy-demo noise level when none is given (deblur / upscale: PNP_DEMO_SIGMA).
DEMO_SIGMA = 0.1
# The lowest level a plug-and-play denoiser is loaded at (a noise-free observation has none).
PNP_FLOOR = 0.255 / 255
PNP_DEMO_SIGMA = 2.55 / 255


@dataclass
class FileResult:
    source: Path
    output: Path | None = None
    error: str | None = None
    skipped: str | None = None
    replaced: bool = False
    sigma: float | None = None
    sigma_estimated: bool = False
    seconds: float = 0.0
    psnr_degraded: float | None = None
    psnr_restored: float | None = None
    notes: tuple = ()


def collect_inputs(inputs):
    """Expands files and folders (not recursive, hidden files skipped) into a list of paths.

    A file whose suffix is not an image format's (`io.IMAGE_SUFFIXES`) is not read, whether
    named or found in a folder: it comes back among the skipped, by name.

    Returns:
        (paths, problems, skipped): image paths to try, (path, message) for inputs that gave
        none, and (path, reason) for files that are not images.
    """
    paths, problems, skipped = [], [], []

    def add(path):
        if path.suffix.lower() in io.IMAGE_SUFFIXES:
            paths.append(path)
        else:
            skipped.append((path, f"not an image file ({path.suffix or 'no suffix'})"))

    for entry in map(Path, inputs):
        if entry.is_dir():
            found = [
                p for p in sorted(entry.iterdir()) if p.is_file() and not p.name.startswith(".")
            ]
            if not found:
                problems.append((entry, "folder holds no files"))
            for path in found:
                add(path)
        elif entry.exists():
            add(entry)
        else:
            problems.append((entry, "file not found"))
    return paths, problems, skipped


def check_output_folder(folder):
    """Creates `folder` if needed and checks a file can be written there.

    Raises:
        OSError: with a one-line message if it cannot be created or written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OSError(
            f"cannot write to output folder {folder}: {error.strerror or error}"
        ) from None


def restore_files(inputs, output, options=RestoreOptions(), log=print):
    """Restores every image in `inputs` (files or folders) into the folder `output`.

    Each output keeps the input's file name, format, mode, orientation and colour profile (a
    camera raw file's is a 16-bit TIFF of the same stem).
    With `noisy_demo`, the degraded input is also written as `<stem>_degraded<suffix>`. An
    interruption (Ctrl-C, SIGTERM) stops after removing the file being written; the results
    so far are kept in `results` of the `RestoreInterrupted` it raises.

    Returns:
        list of `FileResult`, one per input file (and one per input that named no image).

    Raises:
        ValueError / FileNotFoundError: unknown model name, missing model file, or a model that
            is not an image restoration model.
        OSError: output folder not writable.
        RestoreInterrupted: on KeyboardInterrupt / SystemExit, with the results so far.
    """
    from keras_resunet import degradations, pretrained
    from keras_resunet.inference import load_denoiser

    model = options.model or pretrained.DEFAULT_FOR_TASK[options.task]
    degradation = options.degradation()
    demo_sigma = degradations.noise_level(degradation)
    # plug-and-play sets the level each iteration; a noise-free observation loads at a floor
    if options.operator is not None and demo_sigma < PNP_FLOOR:
        denoiser = load_denoiser(model, degradations.make_degradation(options.task, PNP_FLOOR))
    else:
        denoiser = load_denoiser(model, degradation)
    if options.operator is not None and not denoiser.takes_sigma:
        from keras_resunet.pnp import PlugAndPlay

        PlugAndPlay(denoiser, options.operator, demo_sigma)  # refuses it, saying why
    output = Path(output)
    check_output_folder(output)
    if options.operator is not None and options.operator.note:
        log(f"note: {options.operator.note}")
    if options.sigma is not None and not denoiser.takes_sigma:
        log(
            f"note: {denoiser.name} has no noise-level input; it restores the noise level it "
            "was trained for, not --sigma"
        )

    paths, problems, skipped = collect_inputs(inputs)
    results = [FileResult(path, error=message) for path, message in problems]
    results += [FileResult(path, skipped=reason) for path, reason in skipped]
    for path, reason in skipped:
        log(f"{path}: skipped: {reason}")
    planned = _planned_outputs(paths, output, options.noisy_demo)
    total = len(paths)
    try:
        for index, path in enumerate(paths):
            result = FileResult(path)
            results.append(result)
            start = time.perf_counter()
            try:
                _restore_one(path, index, planned, denoiser, degradation, options, result)
            except Exception as error:  # noqa: BLE001  one file's failure must not end the batch
                message = str(error) or type(error).__name__
                result.error = message.removeprefix(f"{path}: ")
            result.seconds = time.perf_counter() - start
            log(_progress_line(index + 1, total, result))
    except (KeyboardInterrupt, SystemExit) as stop:
        current = results[-1] if results else None
        if current is not None and not (current.output or current.error or current.skipped):
            current.error = "interrupted before its output was written"
        raise RestoreInterrupted(results, stop) from None
    return results


class RestoreInterrupted(Exception):
    """Ctrl-C or SIGTERM during `restore_files`; `results` holds what was done."""

    def __init__(self, results, cause):
        super().__init__("interrupted")
        self.results = results
        self.cause = cause


def _planned_outputs(paths, output, noisy_demo):
    """{input path: (restored target, degraded target or None, clash message or None)}: every
    file this run will write, so that no output replaces an input or another output."""
    owners, planned = {}, {}
    inputs = {path.resolve() for path in paths}
    for path in paths:
        target = output / io.output_name(path)
        degraded = (
            target.with_name(f"{target.stem}_degraded{target.suffix}") if noisy_demo else None
        )
        clash = None
        for written in filter(None, (target, degraded)):
            if written.resolve() == path.resolve():
                clash = "the output would overwrite the input: choose another --output"
            elif written.resolve() in inputs:
                clash = f"its output {written} would overwrite another input"
            elif written in owners:
                clash = f"same file name as {owners[written]}: its output would be lost"
        if clash is None:
            for written in filter(None, (target, degraded)):
                owners[written] = path
        planned[path] = (target, degraded, clash)
    return planned


def _restore_one(path, index, planned, denoiser, degradation, options, result):
    from keras_resunet import degradations, metrics
    from keras_resunet.inference import restore_image

    target, degraded_path, clash = planned[path]
    if clash:
        raise ValueError(clash)
    if options.skip_existing and target.exists():
        result.skipped = f"{target} exists (--skip-existing)"
        return
    result.replaced = target.exists()
    image = io.read_image_file(path, max_pixels=MAX_PIXELS)
    result.notes = image.notes
    if options.operator is not None:
        _restore_through_operator(image, index, target, degraded_path, denoiser, options, result)
        return
    clean = image.pixels
    pixels = clean
    if options.noisy_demo:
        # through degradations.apply: TensorFlow's stateless ops when installed, else NumPy
        pixels = degradations.apply(degradation, clean, [options.seed, index])
    if denoiser.takes_sigma:
        if options.sigma is not None:
            result.sigma = options.sigma
        else:
            # noise added here was never compressed
            quality = None if options.noisy_demo else image.stored_quality
            result.sigma = estimate_sigma(pixels, stored_quality=quality)
            result.sigma_estimated = True
        denoiser = denoiser.at_sigma(result.sigma)
    restored = restore_image(
        denoiser, pixels, tile=options.tile, overlap=options.overlap, ensemble=options.ensemble
    )
    if options.noisy_demo:
        result.psnr_degraded = float(metrics.psnr(pixels, clean))
        result.psnr_restored = float(metrics.psnr(restored, clean))
        io.save_image_file(degraded_path, image.with_pixels(pixels))
    io.save_image_file(target, image.with_pixels(restored))
    result.output = target


def _restore_through_operator(image, index, target, degraded_path, denoiser, options, result):
    """Deblurs or upscales one image by plug-and-play (with `noisy_demo`: a clean image
    degraded through the operator first, circularly, as the benchmarks are)."""
    from keras_resunet import metrics
    from keras_resunet.operators import check_kernel
    from keras_resunet.pnp import PlugAndPlay, Schedule, bicubic_upscale

    operator, scale = options.operator, options.operator.scale
    check_kernel(operator.kernel, image.pixels.shape, nonnegative=False)
    pixels, clean, boundary = image.pixels, None, "symmetric"
    stored_quality = image.stored_quality
    if options.noisy_demo:
        height, width = (side - side % scale for side in pixels.shape[:2])
        clean, boundary = pixels[:height, :width], "circular"
        image = image.with_pixels(clean)
        if image.alpha is not None:
            image = dataclasses.replace(image, alpha=image.alpha[:height, :width])
        sigma = PNP_DEMO_SIGMA if options.sigma is None else options.sigma
        demo = PlugAndPlay(denoiser, operator, sigma, boundary="circular")
        pixels, stored_quality = demo.degrade(clean, [options.seed, index]), None
    if options.sigma is not None:
        result.sigma = options.sigma
    else:
        result.sigma = estimate_sigma(pixels, stored_quality=stored_quality)
        result.sigma_estimated = True
    solver = PlugAndPlay(
        denoiser,
        operator,
        result.sigma,
        schedule=Schedule(iterations=options.iterations),
        ensemble=options.ensemble,
        boundary=boundary,
        tile=options.tile or None,
    )
    restored = solver.restore_one(pixels)
    small = image.alpha
    if options.noisy_demo:
        if image.alpha is not None:
            small = image.alpha[::scale, ::scale]
        result.psnr_degraded = float(
            metrics.psnr(np.clip(bicubic_upscale(pixels, scale), 0, 1), clean)
        )
        result.psnr_restored = float(metrics.psnr(restored, clean))
        degraded = dataclasses.replace(image, pixels=np.clip(pixels, 0, 1), alpha=small)
        io.save_image_file(degraded_path, degraded)
    alpha = small
    if small is not None and scale > 1:
        alpha = np.clip(bicubic_upscale(small, scale), 0, 1)
    if options.noisy_demo:
        alpha = image.alpha
    io.save_image_file(target, dataclasses.replace(image, pixels=restored, alpha=alpha))
    result.output = target


def _progress_line(position, total, result):
    if result.error:
        return f"[{position}/{total}] {result.source}: FAILED: {result.error}"
    if result.skipped:
        return f"[{position}/{total}] {result.source}: skipped: {result.skipped}"
    line = f"[{position}/{total}] {result.source} -> {result.output} ({result.seconds:.1f} s)"
    if result.sigma is not None:
        how = "estimated" if result.sigma_estimated else "given"
        line += f"  sigma {result.sigma:.3f} ({result.sigma * 255:.1f}/255, {how})"
    if result.replaced:
        line += "  [replaced an existing file]"
    if result.psnr_degraded is not None:
        line += f"  PSNR {result.psnr_degraded:.2f} -> {result.psnr_restored:.2f} dB"
    return line + "".join(f"\n    note: {note}" for note in result.notes)


def summarize(results):
    """A few closing lines: counts, mean PSNR for --noisy-demo, and every failure by name."""
    failed = [r for r in results if r.error]
    skipped = [r for r in results if r.skipped]
    done = [r for r in results if not r.error and not r.skipped]
    replaced = sum(r.replaced for r in done)
    lines = [
        f"restored {len(done)}, failed {len(failed)}, skipped {len(skipped)} "
        f"of {len(results)} inputs"
        + (f" ({replaced} existing outputs replaced)" if replaced else "")
    ]
    scored = [r for r in done if r.psnr_degraded is not None]
    if scored:
        before = np.mean([r.psnr_degraded for r in scored])
        after = np.mean([r.psnr_restored for r in scored])
        lines.append(f"mean PSNR over {len(scored)} images: {before:.2f} -> {after:.2f} dB")
    lines += [f"failed: {r.source}: {r.error}" for r in failed]
    return "\n".join(lines)
