"""The Python packages the GPU machine lacks for the PyTorch trainer, brought as wheels.

The H200 machine has Python 3.12 and PyTorch but no network and no Keras, and our models are Keras 3
definitions run by the torch backend (workloads/training/torch_ddp.py). So, here, where pip reaches
PyPI, ``python -m tests.bench.gpu.wheels`` downloads the wheels the trainer's imports need, for
CPython 3.12 on manylinux x86-64, into ``build/gpu-wheels`` (ignored; the device run carries it), and
writes ``requirements.txt`` beside them: the exact ``name==version`` list the machine installs with
``--no-index``. Versions are those of this checkout's environment, the ones the test suite runs with
(the workloads' own pins in pyproject.toml; Keras' as TensorFlow's pin resolved it).

Not brought: torch and numpy (the machine's own, built for each other and its CUDA driver).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import pathlib
import shutil
import subprocess
import sys
import tempfile

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.bench.run import ROOT

FOLDER = ROOT / "build" / "gpu-wheels"
REQUIREMENTS = "requirements.txt"
# What `python -m workloads train --framework pytorch` imports that the machine may lack or hold in
# another version; their own requirements are added by `closure`.
ROOTS = (
    "keras",  # the models (workloads/models.py), run by the torch backend
    "fsspec",  # workloads.core.storage: every URL the data layer reads
    "prometheus-client",  # workloads.training.metrics
    "tqdm",  # workloads.core.progress
)
MACHINE_OWN = frozenset({"torch", "numpy"})
# The device's interpreter, for the environment markers of requirements and pip's platform tags.
PYTHON = "3.12"
MARKER_ENVIRONMENT = {
    "python_version": PYTHON,
    "python_full_version": f"{PYTHON}.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
# glibc 2.17 (manylinux2014) to 2.34 (the machine runs Python 3.12.3, a newer glibc); pip matches each exactly.
PLATFORMS = (
    "manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64",
)  # fmt: skip
MAX_BYTES = 32 << 20  # the device run carries the working tree and these in 64 MiB together


def closure(roots: tuple[str, ...] = ROOTS) -> dict[str, str]:
    """Every distribution ``roots`` need on the device's Python, with this environment's versions."""
    found: dict[str, str] = {}
    pending = list(roots)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found or name in MACHINE_OWN:
            continue
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed here: run `make venv` first") from None
        found[name] = distribution.version
        for line in distribution.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or _applies(requirement.marker):
                pending.append(requirement.name)
    return dict(sorted(found.items()))


def _applies(marker: Marker) -> bool:
    """Whether a requirement's marker holds on the device (extras are never asked for)."""
    return marker.evaluate(MARKER_ENVIRONMENT)


def download(folder: pathlib.Path = FOLDER) -> list[pathlib.Path]:
    """Replaces ``folder`` with the wheels of :func:`closure` and their ``requirements.txt``."""
    pins = [f"{name}=={version}" for name, version in closure().items()]
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".gpu-wheels-", dir=folder.parent))
    try:
        subprocess.run(_pip_download(staging, pins), check=True)
        (staging / REQUIREMENTS).write_text("\n".join(pins) + "\n")
        size = sum(path.stat().st_size for path in staging.iterdir())
        if size > MAX_BYTES:
            raise SystemExit(f"the wheels take {size >> 20} MiB, over {MAX_BYTES >> 20} MiB: carry fewer")
        staging.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(folder.glob("*.whl"))


def _pip_download(dest: pathlib.Path, pins: list[str]) -> list[str]:
    platforms = [flag for platform in PLATFORMS for flag in ("--platform", platform)]
    return [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--python-version", PYTHON, "--implementation", "cp", *platforms, "--dest", str(dest), *pins,
    ]  # fmt: skip


def problem(folder: pathlib.Path) -> str | None:
    """What keeps ``folder`` from being installed on the device, in one line; None when nothing does."""
    how = f"run `python -m tests.bench.gpu.wheels` where pip reaches PyPI, and carry {_shown(folder)}"
    listing = folder / REQUIREMENTS
    if not listing.is_file():
        return f"{_shown(folder)}/{REQUIREMENTS} does not exist: {how}"
    present = {(name, str(version)) for name, version, *_ in map(_wheel_name, folder.glob("*.whl"))}
    missing = [
        pin
        for pin in listing.read_text().split()
        if (canonicalize_name(pin.split("==")[0]), pin.split("==")[1]) not in present
    ]
    if missing:
        return f"{_shown(folder)} lacks the wheel(s) of {', '.join(missing)}: {how}"
    return None


def _wheel_name(path: pathlib.Path) -> tuple:
    return parse_wheel_filename(path.name)


def _shown(folder: pathlib.Path) -> str:
    return str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder)


def install_command(folder: pathlib.Path) -> list[str]:
    """pip installing exactly ``requirements.txt`` from ``folder`` into this interpreter, offline.

    Into the interpreter's own environment, not a ``--target`` on ``PYTHONPATH``: the gpu-marked
    tests start their workers with ``PYTHONPATH`` set to the checkout alone. The machine is bare and
    given back after the session, so nothing outlives the run.
    """
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-cache-dir",
        "--disable-pip-version-check", "--root-user-action=ignore", "--find-links", str(folder),
        "--requirement", str(folder / REQUIREMENTS),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dest", type=pathlib.Path, default=FOLDER, help="wheel folder (replaced)")
    args = parser.parse_args(argv)
    wheels = download(args.dest.resolve())
    size = sum(path.stat().st_size for path in wheels)
    print(f"{len(wheels)} wheels, {size / (1 << 20):.1f} MiB, in {_shown(args.dest.resolve())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
