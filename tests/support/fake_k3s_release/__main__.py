"""Builds a fake k3s release directory, laid out like the real release assets.

    python -m tests.support.fake_k3s_release --version v1.33.5+k3s1 --out DIR

DIR then holds `k3s` (the test double, reporting that version), `k3s-airgap-images-amd64.tar.zst`
(placeholder bytes, not images) and `sha256sum-amd64.txt` listing both, as on the k3s release page.
The k3s roles install it through their air-gap path (k3s_install_source: airgap).
"""

import argparse
import hashlib
import pathlib
import sys

SOURCE = pathlib.Path(__file__).with_name("k3s.py")
VERSION_LINE = 'FAKE_K3S_VERSION = "v0.0.0+k3s0"'


def build_release(version: str, out: pathlib.Path, arch: str = "amd64") -> pathlib.Path:
    """Write the fake release for `version` into `out`; returns `out`."""
    source = SOURCE.read_text()
    if VERSION_LINE not in source:
        raise RuntimeError(f"{SOURCE} lost its version placeholder line {VERSION_LINE!r}")
    out.mkdir(parents=True, exist_ok=True)
    binary = out / ("k3s" if arch == "amd64" else f"k3s-{arch}")
    binary.write_text(source.replace(VERSION_LINE, f'FAKE_K3S_VERSION = "{version}"'))
    binary.chmod(0o755)
    images = out / f"k3s-airgap-images-{arch}.tar.zst"
    images.write_bytes(f"fake_k3s_release placeholder for the air-gap images of {version}\n".encode())
    lines = [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}" for path in (binary, images)]
    (out / f"sha256sum-{arch}.txt").write_text("\n".join(lines) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", required=True, help="k3s release tag to fake, e.g. v1.33.5+k3s1")
    parser.add_argument("--out", required=True, type=pathlib.Path, help="directory to write the release into")
    parser.add_argument("--arch", default="amd64", choices=["amd64", "arm64"], help="release architecture")
    args = parser.parse_args(argv)
    print(build_release(args.version, args.out, args.arch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
