"""The run folder: its lock, its progress over every process that trained it, its config."""

import csv
import json
import os
from pathlib import Path

from keras_resunet.io import write_text_atomically
from keras_resunet.precision import resolve_precision
from keras_resunet.provenance import provenance
from keras_resunet.training.config import TrainConfig


class TrainingError(RuntimeError):
    """Training cannot continue (non-finite loss, bad config found late)."""


def read_progress(out_dir):
    """{"steps", "train_seconds"} of a run so far (zeros before its first checkpoint)."""
    path = Path(out_dir) / "progress.json"
    if not path.is_file():
        return {"steps": 0, "train_seconds": 0.0}
    return json.loads(path.read_text())


BEST_MODEL = "best.keras"
BEST_RECORD = "best.json"


def read_best(out_dir):
    """The run's best validation record ({"steps", "train_seconds", "val_psnr", ...}, kept
    beside best.keras by `validation.Validation`), or None."""
    path = Path(out_dir) / BEST_RECORD
    if not (path.is_file() and (Path(out_dir) / BEST_MODEL).is_file()):
        return None
    return json.loads(path.read_text())


def read_config(out_dir):
    """The `TrainConfig` a run folder holds (config.json), read the one way every caller reads
    it: keys added to `TrainConfig` after the run started count as their defaults, and older
    runs' `mixed_precision` flag becomes `precision`."""
    values = json.loads((Path(out_dir) / "config.json").read_text())
    if "mixed_precision" in values:
        legacy = values.pop("mixed_precision")
        values.setdefault("precision", "mixed_float16" if legacy else "float32")
    return TrainConfig.from_dict(values)


def training_budget(run_dir, best=False):
    """Steps and training seconds behind a run's model (with `best`, behind its best-validation
    checkpoint), counting those of the shipped model it was warm-started from (`init_from`,
    whose `<name>.json` says what it took)."""
    progress = json.loads((Path(run_dir) / "progress.json").read_text())
    record = read_best(run_dir) if best else None
    if record:
        # a record without its time: the run's time prorated to its steps
        share = progress["train_seconds"] * record["steps"] / max(progress["steps"], 1)
        progress = {"steps": record["steps"], "train_seconds": record.get("train_seconds", share)}
    budget = {"steps": progress["steps"], "train_seconds": progress["train_seconds"]}
    source = read_config(run_dir).init_from
    if source:
        # the budget as it was when the run started (shipping this run replaces the shipped one)
        record = Path(run_dir) / "init_budget.json"
        if not record.is_file():
            record = Path(source).with_suffix(".json")
        if not record.is_file():
            raise ValueError(f"{record} is missing: the budget of `init_from` {source} is unknown")
        prior = json.loads(record.read_text())
        budget = {
            "steps": budget["steps"] + prior["steps"],
            "train_seconds": round(budget["train_seconds"] + prior["train_seconds"], 1),
            "init_from": Path(source).stem,
            "init_steps": prior["steps"],
            "init_seconds": prior["train_seconds"],
        }
    return budget


class RunLock:
    """A lock file holding the training process id: two processes must never train the same
    run folder (their checkpoints would interleave). A lock left by a dead process is taken
    over."""

    def __init__(self, out_dir):
        self.path = Path(out_dir) / ".lock"

    def __enter__(self):
        # create-if-absent is atomic: of two starts at once, exactly one makes the file
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = int(self.path.read_text())
                except (OSError, ValueError):
                    owner = None  # being written this instant, or left empty: someone holds it
                if owner == os.getpid():
                    return self
                if owner is None or _process_alive(owner):
                    who = f"process {owner}" if owner else "another process"
                    raise TrainingError(f"{self.path.parent} is being trained by {who}") from None
                self.path.unlink(missing_ok=True)  # left by a dead process: take it over
                continue
            with os.fdopen(handle, "w") as lock:
                lock.write(str(os.getpid()))
            return self
        raise TrainingError(f"{self.path.parent}: could not take its lock {self.path}")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RESUMABLE_KEYS = ("steps", "init_from", "checkpoint_every", "data_workers")


def check_or_write_config(config, out_dir):
    """A resumed run must have the config it started with, except `steps` (extending a run is
    allowed) and `init_from` (it only matters before the first checkpoint; the stored one, what
    the run did start from, is kept). The stored config is updated to the new step count. Keys
    added to `TrainConfig` after a run started count as their defaults."""
    path = out_dir / "config.json"
    resolved = json.loads(json.dumps(config.to_dict()))
    resolved["precision"] = resolve_precision(resolved["precision"])  # what this run trains in
    done = read_progress(out_dir)["steps"]
    started = done > 0 or any((out_dir / "checkpoints").glob("*"))
    if path.is_file() and not started:
        # a start refused or stopped before its first checkpoint trained nothing: a retry with
        # a corrected config starts afresh instead of being held to the refused one
        path.unlink()
        (out_dir / "run.json").unlink(missing_ok=True)
    if path.is_file():
        previous = json.loads(json.dumps(read_config(out_dir).to_dict()))
        for values in (previous, resolved):
            # what "auto" means on this machine, so a run may switch between it and its value
            values["precision"] = resolve_precision(values.get("precision", "float32"))
            # the same folder however it was spelled
            if values.get("data_root"):
                values["data_root"] = str(Path(values["data_root"]).expanduser().resolve())
        changed = sorted(
            k for k in resolved if k not in _RESUMABLE_KEYS and previous.get(k) != resolved[k]
        )
        if changed:
            raise TrainingError(
                f"{out_dir} holds a run with a different config ({changed}); use a new folder"
            )
        # checkpoint_every follows a --set steps override (a divisor of it); a resume may move
        # it when the steps done so far fall on its new interval
        if done % resolved["checkpoint_every"]:
            raise TrainingError(
                f"{out_dir} is at step {done}, not a multiple of checkpoint_every="
                f"{resolved['checkpoint_every']}: give steps (or checkpoint_every) that it divides"
            )
        resolved["init_from"] = previous.get("init_from")
        if resolved["steps"] != previous["steps"]:
            _record_extension(out_dir, resolved["steps"])
    write_text_atomically(path, json.dumps(resolved, indent=2))
    if (out_dir / "run.json").is_file():
        return
    write_text_atomically(out_dir / "run.json", json.dumps(provenance(), indent=2))


def _record_extension(out_dir, steps):
    """run.json keeps the command that started the run; a resume that changes its step count
    is added under "extended", so the run's record says how it reached its steps."""
    path = out_dir / "run.json"
    if not path.is_file():
        return
    record = json.loads(path.read_text())
    made = provenance()
    record.setdefault("extended", []).append(
        {"command": made["command"], "steps": steps, "time": made["time"]}
    )
    write_text_atomically(path, json.dumps(record, indent=2))


def final_loss(out_dir):
    """The last logged training loss of a run (from log.csv)."""
    with open(Path(out_dir) / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return float(rows[-1]["loss"])
