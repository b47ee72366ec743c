"""Result records, the tables built from them, and comparison figures.

Every experiment script writes one record per (method, dataset) into
`results/<task>/summary.json`; records from different scripts (the poster's models, the
baselines) merge there, so one table shows every method. A record always says how it was made:
command, git commit, machine, time.
"""

import json
import os
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from keras_resunet.io import to_uint8, write_text_atomically

# The poster's PSNR on BSDS300 test (100 images), sigma 0.1 (../shared/datasets/README.md).
POSTER_PSNR = {
    "denoise": {"unet": 29.31, "resunet": 30.11, "resunet_perceptual": 29.50},
    "deblur_denoise": {"unet": 25.67, "resunet": 25.86, "resunet_perceptual": 25.46},
}


@dataclass
class Record:
    """One method evaluated on one dataset (means of per-image values).

    `status` is "ok", or a reason the method has no numbers ("not run: ...").
    """

    method: str
    task: str
    dataset: str
    sigma: float
    status: str = "ok"
    n_images: int = 0
    psnr: float | None = None
    ssim: float | None = None
    psnr_std: float | None = None
    params: int | None = None
    train_steps: int | None = None
    train_seconds: float | None = None
    seconds_per_megapixel: float | None = None
    machine: str = ""
    command: str = ""
    commit: str = ""
    time: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def key(self):
        return (self.method, self.dataset)


def machine_description():
    """A one-line description of this machine: CPU model, core count, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def load_records(path):
    """Records stored in a summary.json (an empty list if the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    known = {f.name for f in fields(Record)}
    return [
        Record(**{k: v for k, v in item.items() if k in known})
        for item in json.loads(path.read_text())
    ]


def update_records(path, new_records):
    """Merges `new_records` into the summary at `path` (same method and dataset: replaced),
    writes it atomically and returns every record, sorted by dataset then PSNR."""
    merged = {record.key: record for record in load_records(path)}
    merged.update({record.key: record for record in new_records})
    records = sorted(merged.values(), key=lambda r: (r.dataset, -(r.psnr or -1e9), r.method))
    write_text_atomically(path, json.dumps([asdict(r) for r in records], indent=2) + "\n")
    return records


def format_table(records, task):
    """A Markdown table: one row per method, PSNR / SSIM per dataset, the poster's PSNR."""
    datasets = sorted({r.dataset for r in records})
    methods = list(dict.fromkeys(r.method for r in sorted(records, key=_method_order)))
    by_key = {r.key: r for r in records}
    # the poster's numbers are for its own test set (BSDS300): no column for the others
    show_poster = "BSDS300" in datasets
    poster = POSTER_PSNR.get(task, {})
    header = ["method"]
    for dataset in datasets:
        header += [f"{dataset} PSNR", f"{dataset} SSIM"]
    header += ["poster PSNR (BSDS300)"] if show_poster else []
    header += ["params", "train steps", "s / MP"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method in methods:
        row = [method]
        sample = None
        for dataset in datasets:
            record = by_key.get((method, dataset))
            if record is None:
                row += ["", ""]
            elif record.status != "ok":
                row += [record.status, ""]
            else:
                sample = sample or record
                row += [f"{record.psnr:.2f}", f"{record.ssim:.4f}"]
        sample = sample or next(r for r in records if r.method == method)
        if show_poster:
            row.append(f"{poster[method]:.2f}" if method in poster else "")
        row += [
            f"{sample.params:,}" if sample.params else "",
            f"{sample.train_steps:,}" if sample.train_steps else "",
            f"{sample.seconds_per_megapixel:.2f}" if sample.seconds_per_megapixel else "",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _method_order(record):
    order = ["degraded input", "nlm", "bm3d", "autoencoder", "dncnn", "rdunet", "unet"]
    name = record.method
    return (order.index(name) if name in order else len(order), name)


def write_readme(path, records, task, intro, title=None):
    """Writes the results README: a title (default: the task), `intro` (how it was made), then
    the table."""
    commands = sorted({r.command for r in records if r.command})
    machines = sorted({r.machine for r in records if r.machine})
    text = [
        f"# Results: {title or task.replace('_', ' + ')}",
        "",
        intro.strip(),
        "",
        format_table(records, task),
        "",
        "Commands that produced these records:",
        "",
        *[f"- `{command}`" for command in commands],
        "",
        "Machines: " + "; ".join(machines),
        "",
        "Every number comes from `summary.json` beside this file (with command, commit, time).",
        "",
    ]
    write_text_atomically(path, "\n".join(text))


def make_figure(path, panels, crop=None):
    """Side-by-side panels with a title above each, saved as PNG.

    Args:
        path: output file.
        panels: list of (title, image or None); None draws an empty panel (e.g. "not run").
        crop: optional (top, left, height, width) applied to every image.
    """
    from PIL import Image, ImageDraw, ImageFont

    images = [image for _, image in panels if image is not None]
    height, width = images[0].shape[:2]
    if crop:
        top, left, height, width = crop
    title_height, gap = 22, 4
    canvas = Image.new("RGB", (len(panels) * (width + gap) - gap, height + title_height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    for index, (title, image) in enumerate(panels):
        x = index * (width + gap)
        if image is not None:
            if crop:
                image = image[top : top + height, left : left + width]
            array = to_uint8(np.repeat(image, 3, -1) if image.shape[-1] == 1 else image)
            canvas.paste(Image.fromarray(array), (x, title_height))
        else:
            draw.rectangle([x, title_height, x + width - 1, title_height + height - 1], "#dddddd")
        draw.text((x + 3, 4), title, fill="black", font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(path).with_name(f".{Path(path).name}.tmp.png")
    canvas.save(temporary)
    os.replace(temporary, path)
