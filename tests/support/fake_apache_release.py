"""Builds the release tarballs of the fake_hadoop_release and fake_kafka_release TEST DOUBLES.

A fake release has the real release's file name, top directory and bin/ programs, with a checksum file in
the format the real project publishes, so that the roles install it through their air-gap path exactly as
they install the real one. The programs are small shell wrappers around a Python double
(fake_hadoop_release/hdfs.py, fake_kafka_release/kafka.py) that ships in the tarball together with
fake_service_runtime.py.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pathlib
import tarfile

SUPPORT_DIR = pathlib.Path(__file__).resolve().parent
RUNTIME = SUPPORT_DIR / "fake_service_runtime.py"


def wrapper(double_path: str, *leading_args: str) -> str:
    """A bin/ script that runs the Python double (found relative to the script, through symlinks)."""
    args = "".join(f" {arg}" for arg in leading_args)
    return (
        "#!/bin/sh\n"
        "# fake_*_release TEST DOUBLE: see the Python program this runs.\n"
        'home=$(dirname "$(dirname "$(readlink -f "$0")")")\n'
        f'exec python3 "$home/{double_path}"{args} "$@"\n'
    )


def build_tarball(tarball: pathlib.Path, top: str, files: dict[str, tuple[str, int]]) -> bytes:
    """Write `tarball` holding top/<name> for each {name: (text, mode)}; returns its bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, (text, mode) in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), mode, 0
            archive.addfile(info, io.BytesIO(data))
    tarball.parent.mkdir(parents=True, exist_ok=True)
    tarball.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def double_files(double: pathlib.Path, directory: str) -> dict[str, tuple[str, int]]:
    """The Python double and the shared runtime, placed in `directory` of the release."""
    return {
        f"{directory}/{double.name}": (double.read_text(), 0o755),
        f"{directory}/{RUNTIME.name}": (RUNTIME.read_text(), 0o644),
    }


def sha512_bsd(name: str, data: bytes) -> str:
    """`SHA512 (<name>) = <hex>`, as Apache Hadoop publishes its .sha512 files."""
    return f"SHA512 ({name}) = {hashlib.sha512(data).hexdigest()}\n"


def sha512_gpg(name: str, data: bytes) -> str:
    """`<name>: <HEX IN GROUPS OF 8>` over several lines (gpg --print-md), as Apache Kafka publishes them."""
    digest = hashlib.sha512(data).hexdigest().upper()
    groups = [digest[index : index + 8] for index in range(0, len(digest), 8)]
    return f"{name}: {' '.join(groups[:6])}\n{' ' * (len(name) + 2)}{' '.join(groups[6:])}\n"


def cli(description: str, default_version: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--version", default=default_version, help=f"release version to fake (default {default_version})"
    )
    parser.add_argument(
        "--out", required=True, type=pathlib.Path, help="directory to write the release files into"
    )
    return parser.parse_args()
