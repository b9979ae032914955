"""The release tarballs `make releases` builds from ansible/releases/<component>/: where each is, building it
on demand (one process at a time), verifying it against its .sha512 and unpacking it for a test."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import pathlib
import subprocess
import tarfile
from xml.etree import ElementTree

ROOT = pathlib.Path(__file__).resolve().parents[2]
RELEASES = ROOT / "build" / "releases"
_POM_NAMESPACE = {"m": "http://maven.apache.org/POM/4.0.0"}


class ReleaseMissing(RuntimeError):
    """The release is not built and could not be: the message says what to run."""


@dataclasses.dataclass(frozen=True)
class Release:
    """One component's release: ``name_format`` is filled from its POM's properties (``{kafka.version}``
    ...), where the versions are pinned; the tarball is that name and ``suffix``; ``jar_list`` is the file
    in the release listing each jar's SHA-1 as Maven Central published it."""

    component: str
    label: str
    name_format: str
    suffix: str
    jar_list: str

    @property
    def pom(self) -> pathlib.Path:
        return ROOT / "ansible" / "releases" / self.component / "pom.xml"

    @property
    def build_script(self) -> pathlib.Path:
        return ROOT / "ansible" / "releases" / self.component / "build.sh"

    def properties(self) -> dict[str, str]:
        found = ElementTree.parse(self.pom).getroot().find("m:properties", _POM_NAMESPACE)
        return {child.tag.split("}", 1)[1]: (child.text or "").strip() for child in found}

    def _fill(self, text: str) -> str:
        for key, value in self.properties().items():
            text = text.replace("{" + key + "}", value)
        return text

    @property
    def name(self) -> str:
        """The top directory of the tarball, e.g. kafka_2.13-4.1.2."""
        return self._fill(self.name_format)

    @property
    def version(self) -> str:
        return self.name.rsplit("-", 1)[1]

    @property
    def tarball(self) -> pathlib.Path:
        return RELEASES / f"{self.name}{self.suffix}"

    def build(self) -> pathlib.Path:
        """Makes the tarball (nothing to do when it is newer than its sources), one process at a time.
        Only the file target: `make releases` also installs the Debian packages, which needs root."""
        RELEASES.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        with (RELEASES / ".build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            result = subprocess.run(
                ["make", "--no-print-directory", "-s", str(self.tarball.relative_to(ROOT))],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
        if result.returncode != 0 or not self.tarball.exists():
            said = (result.stdout + result.stderr).strip().splitlines() or ["nothing"]
            reason = next((line for line in said if line.startswith("release build failed")), said[-1])
            raise ReleaseMissing(
                f"no {self.label} release at {self.tarball.relative_to(ROOT)}: run `make releases` ({reason})"
            )
        return self.tarball

    def unpack(self, destination: pathlib.Path) -> pathlib.Path:
        """Builds the release if needed, verifies it and unpacks it into ``destination``; returns its home."""
        path = self.build()
        verified_sha512(path)
        with tarfile.open(path) as archive:
            archive.extractall(destination, filter="tar")
        return destination / self.name


def required(release: Release, destination: pathlib.Path | None = None) -> pathlib.Path:
    """For a test: the release built (and unpacked into ``destination``, its home returned, when given).
    When it cannot be, the test fails with the one line that names `make releases`, never a silent skip."""
    import pytest

    try:
        return release.unpack(destination) if destination is not None else release.build()
    except ReleaseMissing as missing:
        pytest.fail(str(missing), pytrace=False)


def verified_sha512(path: pathlib.Path) -> str:
    """The tarball's SHA-512, checked against its .sha512 file as the roles check it."""
    published = (path.parent / f"{path.name}.sha512").read_text().split()
    actual = hashlib.sha512(path.read_bytes()).hexdigest()
    if published[:2] != [actual, path.name]:
        raise ReleaseMissing(f"{path} does not match {path.name}.sha512: run `make releases` again")
    return actual


KAFKA = Release("kafka", "Kafka", "kafka_{scala.binary.version}-{kafka.version}", ".tgz", "libs.sha1")
HADOOP = Release("hadoop", "Hadoop", "hadoop-{hadoop.version}", ".tar.gz", "share/hadoop/jars.sha1")
# The Prometheus JMX exporter agent: one jar, no tarball (build() makes it; see tests/support/jmx_exporter.py).
JMX_EXPORTER = Release(
    "jmx-exporter", "Prometheus JMX exporter", "jmx_prometheus_javaagent-{jmx.exporter.version}", ".jar", ""
)
