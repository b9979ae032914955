"""Builds fake_nvidia_repository, a TEST DOUBLE of NVIDIA's apt repositories for the nvidia_gpu role.

NVIDIA's CUDA repository (driver packages) and the NVIDIA Container Toolkit repository cannot be reached
from the build machine, and the test containers run the build machine's kernel, for which the
distribution has no header packages. This builds three flat apt repositories with the real packages'
names, versions and dependencies, signed with a key generated for the build (the private key is thrown
away), so that the role adds, verifies, pins and installs them exactly as it does NVIDIA's:

    cuda/               nvidia-open and cuda-drivers (meta packages), nvidia-driver-cuda (nvidia-smi),
                        nvidia-kernel-open-dkms, nvidia-kernel-dkms, nvidia-persistenced, each on two
                        driver branches (the older one is what the role's apt pin must keep); the key
                        is where NVIDIA publishes it, <repository>/3bf863cc.pub
    container-toolkit/  nvidia-container-toolkit and nvidia-container-toolkit-base (nvidia-ctk,
                        nvidia-container-runtime); key: gpgkey
    kernel/             linux-headers-<running kernel> and the linux-headers-<arch> meta package, standing
                        in for the distribution's archive; key: gpgkey

The programs inside are stand-ins: nvidia-smi answers as the real one does on a host without a loaded
driver (exit 9), nvidia-ctk and nvidia-container-runtime report their version and run nothing. Nothing
here builds a kernel module or touches a GPU.

    python -m tests.support.fake_nvidia_repository --kernel "$(uname -r)" --out build/fake_nvidia_repository
"""

from __future__ import annotations

import argparse
import dataclasses
import email.utils
import gzip
import hashlib
import pathlib
import platform
import re
import shutil
import subprocess
import tempfile

DRIVER_VERSIONS = ("580.95.05-1", "590.44.01-1")
TOOLKIT_VERSION = "1.18.0-1"
HEADERS_VERSION = "0+fake1"
DEB_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}
# Debian package names: lower case letters, digits, + - . (Debian policy 5.6.1).
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
ORIGIN = "fake_nvidia_repository"

NVIDIA_SMI = """#!/bin/sh
# fake_nvidia_repository TEST DOUBLE of nvidia-smi {version}: this host has no NVIDIA driver loaded.
case "$1" in
  --version) echo "NVIDIA-SMI version  : {version} (fake_nvidia_repository test double)"; exit 0 ;;
esac
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running." >&2
exit 9
"""
TOOLKIT_PROGRAM = """#!/bin/sh
# fake_nvidia_repository TEST DOUBLE of {program} {version}: reports its version, runs nothing.
case "$1" in
  --version|-v|version) echo "{program} version {version} (fake_nvidia_repository test double)"; exit 0 ;;
esac
echo "{program}: fake_nvidia_repository test double, it cannot run containers" >&2
exit 1
"""


@dataclasses.dataclass(frozen=True)
class Package:
    name: str
    version: str
    description: str
    depends: tuple[str, ...] = ()
    # {path inside the package: (text, mode)}
    files: tuple[tuple[str, str, int], ...] = ()


def driver_packages(version: str) -> list[Package]:
    """One driver branch of NVIDIA's CUDA repository, with the dependency shape of the real packages."""
    upstream = version.split("-")[0]
    exact = f"(= {version})"
    return [
        Package(
            "nvidia-open",
            version,
            "NVIDIA driver, open kernel modules (meta package)",
            (f"nvidia-driver-cuda {exact}", f"nvidia-kernel-open-dkms {exact}"),
        ),
        Package(
            "cuda-drivers",
            version,
            "NVIDIA driver, proprietary kernel modules (meta package)",
            (f"nvidia-driver-cuda {exact}", f"nvidia-kernel-dkms {exact}"),
        ),
        Package(
            "nvidia-driver-cuda",
            version,
            "NVIDIA driver user space: nvidia-smi",
            files=(("usr/bin/nvidia-smi", NVIDIA_SMI.format(version=upstream), 0o755),),
        ),
        Package(
            "nvidia-kernel-open-dkms",
            version,
            "NVIDIA open kernel module sources for DKMS",
            files=(
                (
                    f"usr/src/nvidia-{upstream}/dkms.conf",
                    f'PACKAGE_NAME="nvidia"\nPACKAGE_VERSION="{upstream}"\n',
                    0o644,
                ),
            ),
        ),
        Package(
            "nvidia-kernel-dkms",
            version,
            "NVIDIA proprietary kernel module sources for DKMS",
            files=(
                (
                    f"usr/src/nvidia-{upstream}/dkms.conf",
                    f'PACKAGE_NAME="nvidia"\nPACKAGE_VERSION="{upstream}"\n',
                    0o644,
                ),
            ),
        ),
        Package(
            "nvidia-persistenced",
            version,
            "NVIDIA persistence daemon",
            files=(
                (
                    "usr/bin/nvidia-persistenced",
                    TOOLKIT_PROGRAM.format(program="nvidia-persistenced", version=upstream),
                    0o755,
                ),
            ),
        ),
    ]


def toolkit_packages(version: str) -> list[Package]:
    upstream = version.split("-")[0]
    program = TOOLKIT_PROGRAM.format
    return [
        Package(
            "nvidia-container-toolkit",
            version,
            "NVIDIA Container Toolkit",
            (f"nvidia-container-toolkit-base (= {version})",),
            (
                (
                    "usr/bin/nvidia-container-runtime-hook",
                    program(program="nvidia-container-runtime-hook", version=upstream),
                    0o755,
                ),
            ),
        ),
        Package(
            "nvidia-container-toolkit-base",
            version,
            "NVIDIA Container Toolkit base: nvidia-ctk and the runtime",
            files=(
                ("usr/bin/nvidia-ctk", program(program="nvidia-ctk", version=upstream), 0o755),
                (
                    "usr/bin/nvidia-container-runtime",
                    program(program="nvidia-container-runtime", version=upstream),
                    0o755,
                ),
            ),
        ),
    ]


def header_packages(kernel: str, arch: str) -> list[Package]:
    headers = f"linux-headers-{kernel}"
    if not PACKAGE_NAME.match(headers):
        raise SystemExit(
            f"fake_nvidia_repository: kernel {kernel!r} gives the package name {headers!r}, which Debian does not "
            "allow (lower case letters, digits, + - . only); the nvidia_gpu role could not install it either"
        )
    return [
        Package(
            headers,
            HEADERS_VERSION,
            f"Header files of kernel {kernel} (stand-in: no headers inside)",
            files=(
                (
                    f"usr/src/{headers}/README",
                    f"fake_nvidia_repository stand-in for the headers of {kernel}\n",
                    0o644,
                ),
            ),
        ),
        Package(
            f"linux-headers-{arch}",
            HEADERS_VERSION,
            "Header files of the newest kernel (meta package stand-in)",
            (f"{headers} (= {HEADERS_VERSION})",),
        ),
    ]


def build_deb(package: Package, arch: str, workdir: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    root = workdir / f"{package.name}_{package.version}"
    (root / "DEBIAN").mkdir(parents=True)
    control = [
        f"Package: {package.name}",
        f"Version: {package.version}",
        f"Architecture: {arch}",
        "Maintainer: mlstack tests <tests@mlstack.invalid>",
        *([f"Depends: {', '.join(package.depends)}"] if package.depends else []),
        f"Description: {package.description}",
        " fake_nvidia_repository TEST DOUBLE (tests/support/fake_nvidia_repository.py).",
    ]
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    for path, text, mode in package.files:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
    deb = out / f"{package.name}_{package.version}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def control_of(deb: pathlib.Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True
    ).stdout


def hashes(data: bytes) -> dict[str, str]:
    return {"MD5Sum": hashlib.md5(data).hexdigest(), "SHA256": hashlib.sha256(data).hexdigest()}


def write_index(repository: pathlib.Path, debs: list[pathlib.Path], label: str, arch: str) -> None:
    """Packages, Packages.gz and Release of a flat repository (`Suites: /`)."""
    stanzas = []
    for deb in sorted(debs):
        data = deb.read_bytes()
        digest = hashes(data)
        stanzas.append(
            control_of(deb).rstrip("\n")
            + f"\nFilename: ./{deb.name}\nSize: {len(data)}\nMD5sum: {digest['MD5Sum']}\nSHA256: {digest['SHA256']}\n"
        )
    packages = "\n".join(stanzas).encode()
    (repository / "Packages").write_bytes(packages)
    (repository / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    release = [
        f"Origin: {ORIGIN}",
        f"Label: {label}",
        f"Architectures: {arch}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
    ]
    for field in ("MD5Sum", "SHA256"):
        release.append(f"{field}:")
        for name in ("Packages", "Packages.gz"):
            data = (repository / name).read_bytes()
            release.append(f" {hashes(data)[field]} {len(data):>8} {name}")
    (repository / "Release").write_text("\n".join(release) + "\n")


class SigningKey:
    """A key generated for one build in a throw-away GnuPG home: signs the Release files, exports the public key."""

    def __init__(self) -> None:
        # Short path: gpg-agent's socket lives in the home, and socket paths are limited to about 100 bytes.
        self.home = pathlib.Path(tempfile.mkdtemp(prefix="fakenv-", dir="/tmp"))
        self.gpg(
            "--quick-generate-key",
            f"{ORIGIN} TEST DOUBLE <tests@mlstack.invalid>",
            "ed25519",
            "sign",
            "never",
        )

    def gpg(self, *args: str) -> str:
        command = [
            "gpg",
            "--homedir",
            str(self.home),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *args,
        ]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    def sign(self, repository: pathlib.Path) -> None:
        release = str(repository / "Release")
        self.gpg("--yes", "--clearsign", "--output", str(repository / "InRelease"), release)
        self.gpg("--yes", "--armor", "--detach-sign", "--output", str(repository / "Release.gpg"), release)

    def export(self, path: pathlib.Path) -> None:
        path.write_text(self.gpg("--armor", "--export"))

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"], check=False, capture_output=True
        )
        shutil.rmtree(self.home, ignore_errors=True)


def build(out: pathlib.Path, kernel: str, arch: str) -> dict[str, pathlib.Path]:
    """Builds the three repositories under `out` (replacing what was there); returns them by name."""
    repositories = {
        "cuda": ([p for version in DRIVER_VERSIONS for p in driver_packages(version)], "3bf863cc.pub"),
        "container-toolkit": (toolkit_packages(TOOLKIT_VERSION), "gpgkey"),
        "kernel": (header_packages(kernel, arch), "gpgkey"),
    }
    shutil.rmtree(out, ignore_errors=True)
    key = SigningKey()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for name, (packages, key_file) in repositories.items():
                repository = out / name
                repository.mkdir(parents=True)
                debs = [build_deb(p, arch, pathlib.Path(scratch) / name, repository) for p in packages]
                write_index(repository, debs, name, arch)
                key.sign(repository)
                key.export(repository / key_file)
    finally:
        key.close()
    return {name: out / name for name in repositories}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        required=True,
        help="directory to build the repositories in (cuda/, container-toolkit/, kernel/); replaced",
    )
    parser.add_argument(
        "--kernel",
        default=platform.release(),
        help="kernel release the header packages are named after (default: this machine's, %(default)s)",
    )
    parser.add_argument(
        "--arch",
        default=DEB_ARCHES.get(platform.machine(), platform.machine()),
        help="Debian architecture of the packages (default: this machine's, %(default)s)",
    )
    args = parser.parse_args(argv)
    for name, path in build(args.out, args.kernel, args.arch).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
