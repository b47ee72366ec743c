"""How a result was made: the command, the code version, the machine and libraries, the time."""

import subprocess
import sys
import time
from pathlib import Path


def command_line():
    """This process's command as a user would type it (`python -m pkg.mod` for modules,
    the console script's name for `resunet`)."""
    program = Path(sys.argv[0])
    if program.suffix == ".py" and program.parent.name == "experiments":
        first = f"python -m experiments.{program.stem}"
    elif program.suffix == ".py" and program.name == "__main__.py":
        first = f"python -m {program.parent.name}"
    else:
        first = program.name
    return " ".join([first, *sys.argv[1:]])


RECORD_FIELDS = ("command", "commit", "machine", "time")


def provenance():
    """What a run folder's run.json and every result record keep: the command, the git commit
    of the code, the machine (CPU, cores, SIMD, library versions), the time, the Keras
    backend."""
    import keras

    from keras_resunet.results import machine_description

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    return {
        "command": command_line(),
        "commit": commit,
        "machine": machine_description(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "keras_backend": keras.backend.backend(),
    }
