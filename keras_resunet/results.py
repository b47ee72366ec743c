"""Result records, the tables built from them, and comparison figures.

Every experiment script writes one record per (method, dataset) into
`results/<task>/summary.json`; records from different scripts (the poster's models, the
baselines) merge there, so one table shows every method. A record always says how it was made:
command, git commit, machine, time.
"""

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from keras_resunet.io import atomic_write, to_uint8, write_text_atomically

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


# CPU features that decide training and inference speed (bfloat16 is native only with the last two)
def line_plot(path, series, x_label, y_label, title=""):
    """A PNG line chart of `series` ({name: [(x, y), ...]}), drawn with Pillow alone.

    Args:
        path: output file.
        series: named lists of points; each gets its own colour and a legend entry.
        x_label, y_label, title: axis labels and a title above the chart.
    """
    from PIL import Image, ImageDraw, ImageFont

    width, height, left, right, top, bottom = 860, 440, 64, 300, 34, 48
    points = [point for values in series.values() for point in values]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = np.floor(min(ys)), np.ceil(max(ys))
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)

    def place(x, y):
        px = left + (x - x0) / max(x1 - x0, 1e-9) * (width - left - right)
        py = height - bottom - (y - y0) / max(y1 - y0, 1e-9) * (height - top - bottom)
        return px, py

    for y in np.arange(y0, y1 + 1e-9, 1.0 if y1 - y0 <= 12 else 2.0):
        _, py = place(x0, y)
        draw.line([(left, py), (width - right, py)], fill="#e4e4e4")
        draw.text((left - 30, py - 7), f"{y:.0f}", fill="black", font=font)
    for x in sorted(set(xs)):
        px, _ = place(x, y0)
        draw.line([(px, top), (px, height - bottom)], fill="#f0f0f0")
        draw.text((px - 8, height - bottom + 6), f"{x:g}", fill="black", font=font)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f"]
    for index, (name, values) in enumerate(series.items()):
        colour = colours[index % len(colours)]
        placed = [place(x, y) for x, y in sorted(values)]
        if len(placed) > 1:
            draw.line(placed, fill=colour, width=2)
        for px, py in placed:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        legend_y = top + 8 + index * 18
        draw.line(
            [(width - right + 12, legend_y + 7), (width - right + 32, legend_y + 7)],
            fill=colour,
            width=2,
        )
        draw.text((width - right + 38, legend_y), name, fill="black", font=font)
    draw.text((left + 90, 10), title, fill="black", font=font)
    draw.text(((width - right + left) // 2 - 40, height - 22), x_label, fill="black", font=font)
    draw.text((6, 10), y_label, fill="black", font=font)
    with atomic_write(path, suffix=".png") as temporary:
        canvas.save(temporary)


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


def table_header(columns, left=1):
    """The first two lines of a Markdown table: `columns`, the first `left` of them
    left-aligned (names), the others right-aligned (numbers)."""
    align = ["---" if index < left else "---:" for index in range(len(columns))]
    return ["| " + " | ".join(columns) + " |", "| " + " | ".join(align) + " |"]


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
    lines = table_header(header, left=len(header))
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
    # the operating system's release string identifies a virtual machine, not its speed
    machines = sorted({re.sub(r", Linux [^,]*", "", r.machine) for r in records if r.machine})
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
    with atomic_write(path, suffix=".png") as temporary:
        canvas.save(temporary)
