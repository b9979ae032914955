"""Builds a fake Kafka release, laid out like the real one (a TEST DOUBLE: see kafka.py).

    python -m tests.support.fake_kafka_release --version 4.1.0 --out DIR

DIR then holds kafka_<scala>-<version>.tgz (bin/kafka-storage.sh, kafka-server-start.sh, kafka-topics.sh,
kafka-configs.sh and the double they run) and kafka_<scala>-<version>.tgz.sha512 in Kafka's published
(gpg --print-md) format. The kafka role installs it through its air-gap path (kafka_install_source:
airgap, kafka_airgap_dir: DIR).
"""

import pathlib
import sys

from tests.support.fake_apache_release import build_tarball, cli, double_files, sha512_gpg, wrapper

DOUBLE = pathlib.Path(__file__).with_name("kafka.py")
SCRIPTS = ("kafka-storage.sh", "kafka-server-start.sh", "kafka-topics.sh", "kafka-configs.sh")


def build_release(version: str, out: pathlib.Path, scala: str = "2.13") -> pathlib.Path:
    """Write kafka_<scala>-<version>.tgz and its .sha512 into `out`; returns the tarball's path."""
    top = f"kafka_{scala}-{version}"
    tarball = out / f"{top}.tgz"
    files = {
        **{f"bin/{script}": (wrapper(f"libs/{DOUBLE.name}", script), 0o755) for script in SCRIPTS},
        "VERSION.fake": (f"fake_kafka_release {version}: a test double, not Apache Kafka.\n", 0o644),
        **double_files(DOUBLE, "libs"),
    }
    data = build_tarball(tarball, top, files)
    (out / f"{tarball.name}.sha512").write_text(sha512_gpg(tarball.name, data))
    return tarball


def main() -> int:
    args = cli(__doc__, "4.1.0")
    print(build_release(args.version, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
