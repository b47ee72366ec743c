"""The export's output folder: what may be replaced, and how the finished export lands there.

An export writes only to a new or empty folder, or replaces an earlier export (a folder whose
`export_report.json` lists every file in it); a folder holding anything else, the current
folder, a folder above it, the home folder or the model's own folder is refused, untouched.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

REPORT = "export_report.json"


def check_output_folder(out_dir, overwrite, model_path):
    """Refuses an output folder whose replacement could destroy what this tool did not write.

    Raises:
        FileExistsError: `out_dir` is not empty and is not an earlier export to be overwritten.
        ValueError: `out_dir` is the current folder, one above it, or holds the model.
    """
    resolved = out_dir.resolve()
    protected = [Path.cwd().resolve(), Path(model_path).resolve(), Path.home().resolve()]
    if any(resolved == p or resolved in p.parents for p in protected):
        raise ValueError(
            f"Refusing to export into {out_dir}: it is the current folder, a folder above it, "
            "the home folder or holds the model. Name a new folder, e.g. --out exported/"
        )
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir() or out_dir.is_symlink():
        raise FileExistsError(f"Output path exists and is not a folder: {out_dir}")
    entries = {entry.name for entry in out_dir.iterdir()}
    if not entries:
        return
    if REPORT not in entries:
        raise FileExistsError(
            f"Output folder {out_dir} exists and is not an export (no {REPORT}): "
            "name a new folder; its files are left untouched"
        )
    foreign = sorted(entries - _export_names(out_dir / REPORT))
    if foreign:
        raise FileExistsError(
            f"Output folder {out_dir} holds files that are not part of its export "
            f"({', '.join(foreign[:5])}): name a new folder; nothing was changed"
        )
    if not overwrite:
        raise FileExistsError(
            f"Output folder {out_dir} holds an earlier export (pass --overwrite to replace it)"
        )


def _export_names(report_path):
    """The top-level names an export writes, as listed by its report."""
    try:
        report = json.loads(report_path.read_text())
        paths = [artifact["path"] for artifact in report["artifacts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return {REPORT}
    return {REPORT, *paths, *(f"{path}.json" for path in paths)}


def move_into_place(scratch, out_dir):
    """Renames the finished export to `out_dir`; an earlier export there is moved aside first and
    removed only once the new one is in place."""
    previous = None
    if out_dir.exists():
        previous = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        previous.rmdir()
        out_dir.rename(previous)
    try:
        scratch.rename(out_dir)
    except BaseException:
        if previous is not None:
            previous.rename(out_dir)
        raise
    if previous is not None:
        shutil.rmtree(previous)


def make_readable(folder):
    """Gives a folder made by `tempfile.mkdtemp` (mode 0700) the permissions of a folder made
    normally under the current umask."""
    from keras_resunet.io import current_umask

    os.chmod(folder, 0o777 & ~current_umask())
