"""Every release tarball `make releases` assembles from Maven Central (ansible/releases/<component>/): a
checksum file the roles read, every jar as Central published it, the same bytes from the same sources, and
a jar that does not match Central's published checksum stopping the build with the tarball's and the jar's
names. What each release must run is tested beside its role (test_kafka_release.py, test_hadoop_release.py)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import subprocess

import pytest

from tests.ansible.support import load_yaml
from tests.support.releases import HADOOP, JMX_EXPORTER, KAFKA, ROOT, Release, required

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("releases")]
# One jar of each release's closure, damaged in a copy of the local Maven repository.
DAMAGED = {
    KAFKA: "org/apache/kafka/kafka-clients",
    HADOOP: "org/apache/hadoop/hadoop-common",
    JMX_EXPORTER: "io/prometheus/jmx/jmx_prometheus_javaagent",
}


@pytest.fixture(scope="module", params=[KAFKA, HADOOP], ids=lambda release: release.component)
def release(request) -> Release:
    return request.param


@pytest.fixture(scope="module")
def tarball(release) -> pathlib.Path:
    return required(release)


@pytest.fixture(params=list(DAMAGED), ids=lambda release: release.component)
def built(request) -> tuple[Release, pathlib.Path]:
    """Each release, the JMX exporter's jar too, and its built file."""
    return request.param, required(request.param)


def test_the_checksum_file_is_one_the_roles_read_and_it_matches(tarball):
    """release_artifact's checksum.yml reads "<hex>  <name>" lines, as sha512sum writes them."""
    text = (tarball.parent / f"{tarball.name}.sha512").read_text()
    assert re.fullmatch(rf"[0-9a-f]{{128}}  {re.escape(tarball.name)}\n", text)
    assert text.split()[0] == hashlib.sha512(tarball.read_bytes()).hexdigest()


def test_every_jar_matches_the_sha1_maven_central_published(release, tarball, tmp_path):
    home = release.unpack(tmp_path)
    result = subprocess.run(
        ["sha1sum", "--check", "--strict", release.jar_list],
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    listed = {line.split()[1] for line in (home / release.jar_list).read_text().splitlines()}
    assert listed == {str(jar.relative_to(home)) for jar in home.rglob("*.jar")}


def local_repository() -> pathlib.Path:
    return pathlib.Path(os.environ.get("MAVEN_REPO_LOCAL", pathlib.Path.home() / ".m2" / "repository"))


def shadow_repository(source: pathlib.Path, target: pathlib.Path, damaged: str) -> None:
    """A copy of a Maven repository: jars as symbolic links (read only), everything else copied (Maven may
    write beside it), and the jars under ``damaged`` damaged copies of their own."""
    for directory, _, files in os.walk(source):
        into = target / pathlib.Path(directory).relative_to(source)
        into.mkdir(parents=True, exist_ok=True)
        for name in files:
            original = pathlib.Path(directory) / name
            if name.endswith(".jar"):
                (into / name).symlink_to(original)
            else:
                (into / name).write_bytes(original.read_bytes())
    for jar in (target / damaged).glob("*/*.jar"):
        data = jar.read_bytes()
        jar.unlink()
        jar.write_bytes(data + b"damaged")


def build(release: Release, out: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(release.build_script), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
        check=False,
    )


def test_the_same_sources_build_the_same_tarball(release, tarball, tmp_path):
    rebuilt = build(release, tmp_path, MAVEN_EXTRA_ARGS="-o")
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert (tmp_path / f"{tarball.name}.sha512").read_text() == (
        tarball.parent / f"{tarball.name}.sha512"
    ).read_text()


def test_a_jar_damaged_in_the_local_repository_stops_the_build_naming_it(built, tmp_path):
    """Maven checks checksums only while downloading: build.sh checks every jar against the .sha1 that
    Maven downloaded from Central beside it."""
    release, tarball = built
    damaged = DAMAGED[release]
    shadow_repository(local_repository(), tmp_path / "repository", damaged)
    failed = build(
        release, tmp_path / "out", MAVEN_REPO_LOCAL=str(tmp_path / "repository"), MAVEN_EXTRA_ARGS="-o"
    )
    assert failed.returncode != 0
    assert f"{tarball.name}: checksum mismatch for {damaged}/" in failed.stderr, failed.stderr[-3000:]
    assert not (tmp_path / "out" / tarball.name).exists()


def test_a_download_that_does_not_match_the_published_checksum_stops_the_build(built, tmp_path):
    """mvn -C (--strict-checksums): a repository (here a file:// mirror of Central holding a damaged jar
    beside Central's .sha1) that serves a jar with another SHA-1 fails the resolution."""
    release, tarball = built
    damaged = DAMAGED[release]
    shadow_repository(local_repository(), tmp_path / "mirror", damaged)
    settings = tmp_path / "settings.xml"
    settings.write_text(
        "<settings><mirrors><mirror><id>damaged</id><mirrorOf>*</mirrorOf>"
        f"<url>{(tmp_path / 'mirror').as_uri()}</url></mirror></mirrors></settings>"
    )
    failed = build(
        release, tmp_path / "out", MAVEN_REPO_LOCAL=str(tmp_path / "empty"), MAVEN_EXTRA_ARGS=f"-s {settings}"
    )
    assert failed.returncode != 0
    assert "Checksum validation failed" in failed.stderr, failed.stderr[-3000:]
    assert damaged.rsplit("/", 1)[1] in failed.stderr, failed.stderr[-3000:]
    assert f"{tarball.name}: Maven could not resolve and verify the jars" in failed.stderr
    assert not (tmp_path / "out" / tarball.name).exists()


@pytest.mark.parametrize(("release", "role"), [(KAFKA, "kafka"), (HADOOP, "hdfs")], ids=["kafka", "hdfs"])
def test_the_roles_default_version_is_the_release_built_and_tested_here(release, role):
    """Online, the role installs Apache's tarball of its default version; the tests run the POM's. One
    version, so that what production installs is what was tested."""
    defaults = load_yaml(ROOT / "ansible" / "roles" / role / "defaults" / "main.yml")
    assert defaults[f"{role}_version"] == release.version
