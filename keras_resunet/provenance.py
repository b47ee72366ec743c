"""How a result was made: the command, the code version, the machine and libraries, the time."""

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path


def command_line(module=None, argv=None):
    """A command as a user would type it: `python -m module argv...` for a script's
    `main(argv)`; by default this process's own (`python -m pkg.mod` for modules, the console
    script's name for `resunet`)."""
    if module is not None:
        return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])
    program = Path(sys.argv[0])
    if program.suffix == ".py" and program.parent.name in ("experiments", "export"):
        first = f"python -m {program.parent.name}.{program.stem}"
    elif program.suffix == ".py" and program.name == "__main__.py":
        first = f"python -m {program.parent.name}"
    else:
        first = program.name
    return " ".join([first, *sys.argv[1:]])


RECORD_FIELDS = ("command", "commit", "machine", "time")


def record_fields(command=None):
    """The fields of `provenance` that every result record carries (`command`: the script's
    own, from `command_line(module, argv)`, when it was called as a function)."""
    made = provenance(command)
    return {key: made[key] for key in RECORD_FIELDS}


def provenance(command=None):
    """What a run folder's run.json and every result record keep: the command, the git commit
    of the code, the machine (CPU, cores, SIMD, library versions), the time, the Keras
    backend."""
    import keras

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
        "command": command or command_line(),
        "commit": commit,
        "machine": machine_description(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "keras_backend": keras.backend.backend(),
    }


_SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def machine_description():
    """What a result's speed depends on: CPU model, cores, SIMD features, library versions."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = "/".join(flag.upper() for flag in _SIMD_FLAGS if flag in flags) or "no AVX2"
    return f"{cpu}, {os.cpu_count()} cores, {simd}, {_library_versions()}"


def _library_versions():
    from importlib import metadata

    versions = []
    for package in ("tensorflow", "keras", "torch"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(versions)
