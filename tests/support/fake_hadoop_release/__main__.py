"""Builds a fake Hadoop release, laid out like the real one (a TEST DOUBLE: see hdfs.py).

    python -m tests.support.fake_hadoop_release --version 3.4.1 --out DIR

DIR then holds hadoop-<version>.tar.gz (hadoop-<version>/bin/hdfs and the double it runs) and
hadoop-<version>.tar.gz.sha512 in Hadoop's published format. The hdfs role installs it through its
air-gap path (hdfs_install_source: airgap, hdfs_airgap_dir: DIR).
"""

import pathlib
import sys

from tests.support.fake_apache_release import build_tarball, cli, double_files, sha512_bsd, wrapper

DOUBLE = pathlib.Path(__file__).with_name("hdfs.py")


def build_release(version: str, out: pathlib.Path) -> pathlib.Path:
    """Write hadoop-<version>.tar.gz and its .sha512 into `out`; returns the tarball's path."""
    top = f"hadoop-{version}"
    tarball = out / f"{top}.tar.gz"
    files = {
        "bin/hdfs": (wrapper(f"share/fake-hadoop/{DOUBLE.name}"), 0o755),
        "etc/hadoop/README": (
            "fake_hadoop_release: the role writes the configuration to /etc/hadoop.\n",
            0o644,
        ),
        "VERSION.fake": (f"fake_hadoop_release {version}: a test double, not Apache Hadoop.\n", 0o644),
        **double_files(DOUBLE, "share/fake-hadoop"),
    }
    data = build_tarball(tarball, top, files)
    (out / f"{tarball.name}.sha512").write_text(sha512_bsd(tarball.name, data))
    return tarball


def main() -> int:
    args = cli(__doc__, "3.4.1")
    print(build_release(args.version, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
