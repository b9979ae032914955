"""fake_nvidia_repository (tests/support/), the test double of NVIDIA's apt repositories, is what apt
expects of a signed flat repository: each Release signature verifies with the published key, the indexes
match the Release hashes, every package file matches its index entry, and both driver branches are offered
(the role's pin is only tested if a newer branch is there to refuse)."""

from __future__ import annotations

import hashlib
import pathlib
import subprocess

import pytest

from tests.support import fake_nvidia_repository

KERNEL = "6.1.0-28-amd64"


@pytest.fixture(scope="module")
def repositories(tmp_path_factory) -> dict[str, pathlib.Path]:
    return fake_nvidia_repository.build(tmp_path_factory.mktemp("fake-nvidia") / "out", KERNEL, "amd64")


def stanzas(text: str) -> list[dict[str, str]]:
    entries = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if not line.startswith(" "):
                key, _, value = line.partition(": ")
                fields[key] = value
        entries.append(fields)
    return entries


def test_every_release_is_signed_by_the_published_key(repositories, tmp_path):
    for name, key_file in (("cuda", "3bf863cc.pub"), ("container-toolkit", "gpgkey"), ("kernel", "gpgkey")):
        repository = repositories[name]
        keyring = tmp_path / f"{name}.gpg"
        keyring.write_bytes(
            subprocess.run(
                ["gpg", "--dearmor"],
                input=(repository / key_file).read_bytes(),
                capture_output=True,
                check=True,
            ).stdout
        )
        for signed in (["InRelease"], ["Release.gpg", "Release"]):
            verified = subprocess.run(
                ["gpgv", "--keyring", str(keyring), *(str(repository / f) for f in signed)],
                capture_output=True,
                text=True,
            )
            assert verified.returncode == 0, f"{name}/{signed[0]}: {verified.stderr}"


def test_the_indexes_and_packages_match_their_hashes(repositories):
    for repository in repositories.values():
        release = (repository / "Release").read_text()
        sha256 = release.split("SHA256:\n", 1)[1]
        for line in sha256.strip().splitlines():
            digest, size, name = line.split()
            data = (repository / name).read_bytes()
            assert (hashlib.sha256(data).hexdigest(), int(size)) == (digest, len(data)), (
                f"{repository.name}/{name}"
            )
        for entry in stanzas((repository / "Packages").read_text()):
            data = (repository / entry["Filename"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["SHA256"] and int(entry["Size"]) == len(data)


def test_two_driver_branches_with_exact_dependencies_are_offered(repositories):
    entries = stanzas((repositories["cuda"] / "Packages").read_text())
    versions = {(e["Package"], e["Version"]) for e in entries}
    for version in fake_nvidia_repository.DRIVER_VERSIONS:
        assert {
            ("nvidia-open", version),
            ("cuda-drivers", version),
            ("nvidia-driver-cuda", version),
        } <= versions
    assert {v.split(".")[0] for v in fake_nvidia_repository.DRIVER_VERSIONS} == {"580", "590"}
    open_meta = next(e for e in entries if e["Package"] == "nvidia-open" and e["Version"].startswith("580."))
    assert "nvidia-kernel-open-dkms (= 580.95.05-1)" in open_meta["Depends"]
    headers = {e["Package"] for e in stanzas((repositories["kernel"] / "Packages").read_text())}
    assert headers == {f"linux-headers-{KERNEL}", "linux-headers-amd64"}


def test_a_kernel_that_gives_no_valid_package_name_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="Debian does not allow"):
        fake_nvidia_repository.build(tmp_path / "out", "5.15.153.1-microsoft-standard-WSL2", "amd64")
