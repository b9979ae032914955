"""The Prometheus JMX exporter agent as the kafka and hdfs roles run it, for tests: the jar that `make
releases` resolves from Maven Central (ansible/releases/jmx-exporter/), each role's rules rendered as the
role renders them, and the ``-javaagent`` option of kafka.service.j2 and hadoop-env.sh.j2."""

from __future__ import annotations

import hashlib
import pathlib

from tests.support.releases import JMX_EXPORTER, ReleaseMissing


def verified_jar() -> pathlib.Path:
    """Builds the jar if needed and checks it against the .sha256 written beside it."""
    path = JMX_EXPORTER.build()
    published = (path.parent / f"{path.name}.sha256").read_text().split()
    if published != [hashlib.sha256(path.read_bytes()).hexdigest(), path.name]:
        raise ReleaseMissing(f"{path} does not match {path.name}.sha256: run `make releases` again")
    return path


def rendered_configs(directory: pathlib.Path, roles: tuple[str, ...] = ("kafka", "hdfs")) -> dict[str, str]:
    """{role: jmx-exporter.yml} as each role renders it with its own defaults and vars (the exporter is on
    by default: no variable is set), for one host that runs every Kafka and HDFS daemon. One
    ansible-playbook run (render_templates.yml) into ``directory``."""
    from tests.ansible.test_data_tier_templates import SINGLE, render

    (host,) = SINGLE
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render(directory, SINGLE, {}, list(roles))[host]
    return {role: rendered[f"{role}/jmx-exporter.yml"] for role in roles}


def agent(jar: pathlib.Path, port: int, config: pathlib.Path) -> str:
    """The -javaagent option as kafka.service.j2 and hadoop-env.sh.j2 write it."""
    return f"-javaagent:{jar}={port}:{config}"
