"""`resunet denoise`: restore image files and folders, each written in its own mode.

Failures are per file: a missing, corrupt or too-small image is reported by name and the other
files are still restored. Outputs are written atomically, so a failed or interrupted file leaves
nothing behind.
"""

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_resunet import io


@dataclass(frozen=True)
class RestoreOptions:
    """How `restore_files` restores.

    Attributes:
        model: shipped model name, `.keras` path, or classical method ("nlm", "bm3d"); None
            picks the shipped ResUNet for `task`.
        task: "denoise" or "deblur_denoise" (the default model, and the `noisy_demo` degradation).
        sigma: noise sigma for classical methods and for `noisy_demo`.
        tile, overlap: tile side (0 = whole image) and overlap in pixels.
        ensemble: 8-fold flip/rotation self-ensemble.
        noisy_demo: degrade each (clean) input first, then report PSNR before and after.
        seed: seed of the `noisy_demo` degradation (image i uses (seed, i)).
    """

    model: str | None = None
    task: str = "denoise"
    sigma: float = 0.1
    tile: int = 512
    overlap: int = 32
    ensemble: bool = False
    noisy_demo: bool = False
    seed: int = 0


@dataclass
class FileResult:
    source: Path
    output: Path | None = None
    error: str | None = None
    seconds: float = 0.0
    psnr_degraded: float | None = None
    psnr_restored: float | None = None


def collect_inputs(inputs):
    """Expands files and folders (not recursive, hidden files skipped) into a list of paths.

    Returns:
        (paths, problems): image paths to try, and (path, message) for inputs that gave none.
    """
    paths, problems = [], []
    for entry in map(Path, inputs):
        if entry.is_dir():
            found = [
                p
                for p in sorted(entry.iterdir())
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in io.IMAGE_SUFFIXES
            ]
            if not found:
                problems.append((entry, "folder holds no images"))
            paths.extend(found)
        elif entry.exists():
            paths.append(entry)
        else:
            problems.append((entry, "file not found"))
    return paths, problems


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

    Each output keeps the input's file name, format and mode. With `noisy_demo`, the degraded
    input is also written as `<stem>_degraded<suffix>`.

    Returns:
        list of `FileResult`, one per input file (and one per input that named no image).

    Raises:
        ValueError / FileNotFoundError: unknown model name or missing model file.
        OSError: output folder not writable.
    """
    from keras_resunet import degradations, metrics, pretrained
    from keras_resunet.inference import load_denoiser, restore_image

    model = options.model or pretrained.DEFAULT_FOR_TASK[options.task]
    kernel = degradations.gaussian_kernel(7, 1.6) if options.task == "deblur_denoise" else None
    denoiser = load_denoiser(model, sigma=options.sigma, kernel=kernel)
    output = Path(output)
    check_output_folder(output)
    degradation = degradations.make_degradation(options.task, sigma=options.sigma, kernel=kernel)

    paths, problems = collect_inputs(inputs)
    results = [FileResult(path, error=message) for path, message in problems]
    written = {}
    total = len(paths)
    for index, path in enumerate(paths):
        result = FileResult(path)
        results.append(result)
        target = output / path.name
        start = time.perf_counter()
        try:
            if target.resolve() == path.resolve():
                raise ValueError("the output would overwrite the input: choose another --output")
            if target in written:
                raise ValueError(f"same file name as {written[target]}: its output would be lost")
            image = io.read_image_file(path)
            clean = image.pixels
            pixels = clean
            if options.noisy_demo:
                pixels = np.asarray(
                    degradation(clean, np.array([options.seed, index], np.int32)), np.float32
                )
            restored = restore_image(
                denoiser,
                pixels,
                tile=options.tile,
                overlap=options.overlap,
                ensemble=options.ensemble,
            )
            if options.noisy_demo:
                result.psnr_degraded = float(metrics.psnr(pixels, clean))
                result.psnr_restored = float(metrics.psnr(restored, clean))
                degraded_path = target.with_name(f"{target.stem}_degraded{target.suffix}")
                io.save_image_file(
                    degraded_path, io.ImageFile(pixels, image.alpha, image.bit_depth)
                )
            io.save_image_file(target, io.ImageFile(restored, image.alpha, image.bit_depth))
            written[target] = path
            result.output = target
        except (ValueError, OSError) as error:
            result.error = str(error).removeprefix(f"{path}: ")
        result.seconds = time.perf_counter() - start
        log(_progress_line(index + 1, total, result))
    return results


def _progress_line(position, total, result):
    if result.error:
        return f"[{position}/{total}] {result.source}: FAILED: {result.error}"
    line = f"[{position}/{total}] {result.source} -> {result.output} ({result.seconds:.1f} s)"
    if result.psnr_degraded is not None:
        line += f"  PSNR {result.psnr_degraded:.2f} -> {result.psnr_restored:.2f} dB"
    return line


def summarize(results):
    """A few closing lines: counts, mean PSNR for --noisy-demo, and every failure by name."""
    failed = [r for r in results if r.error]
    done = [r for r in results if not r.error]
    lines = [f"restored {len(done)} of {len(results)} inputs"]
    scored = [r for r in done if r.psnr_degraded is not None]
    if scored:
        before = np.mean([r.psnr_degraded for r in scored])
        after = np.mean([r.psnr_restored for r in scored])
        lines.append(f"mean PSNR over {len(scored)} images: {before:.2f} -> {after:.2f} dB")
    lines += [f"failed: {r.source}: {r.error}" for r in failed]
    return "\n".join(lines)
