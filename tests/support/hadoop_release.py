"""A real HDFS from the Hadoop release that `make releases` builds (ansible/releases/hadoop/).

``HdfsCluster`` is one NameNode and one or more DataNodes, each its own JVM started in the foreground
with the release's own ``bin/hdfs`` (as the role's systemd units start them), on free loopback ports with
small heaps, its NameNode formatted with ``hdfs namenode -format -nonInteractive`` first. The data
layer's ``hdfs://`` and ``webhdfs://`` tests, the fault tests and the storage benchmark run against it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import escape

from tests.conftest import pick_free_port
from tests.support import daemons

# Small JVMs: the serial collector and a few hundred MiB leave the two cores and the memory to the tests.
NAMENODE_OPTS = "-Xms64m -Xmx256m -XX:+UseSerialGC"
DATANODE_OPTS = "-Xms64m -Xmx192m -XX:+UseSerialGC"
CLIENT_OPTS = "-Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"


def java_home() -> str:
    """JAVA_HOME as the role sets it: the directory of the java on PATH (bin/java's grandparent)."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = subprocess.run(["readlink", "-f", "/usr/bin/java"], capture_output=True, text=True, check=True)
    return str(pathlib.Path(java.stdout.strip()).parents[1])


def site_xml(properties: dict[str, object]) -> str:
    """A Hadoop *-site.xml holding ``properties``."""
    body = "".join(
        f"  <property><name>{escape(name)}</name><value>{escape(str(value))}</value></property>\n"
        for name, value in properties.items()
    )
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'


class _Daemon:
    """One ``hdfs <daemon>`` process in the foreground, its output in ``<workdir>/<name>.log``."""

    def __init__(self, cluster: HdfsCluster, daemon: str, name: str, conf_dir: pathlib.Path) -> None:
        self.cluster = cluster
        self.daemon = daemon
        self.name = name
        self.conf_dir = conf_dir
        self.log_path = cluster.workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = daemons.launch(
            [self.cluster.home / "bin" / "hdfs", self.daemon],
            self.cluster.env(self.conf_dir, daemon=self.daemon),
            self.log_path,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM (the JVM's shutdown hooks run), SIGKILL after ``timeout_s``; the exit status."""
        return daemons.stop(self.process, timeout_s)

    def kill(self) -> None:
        """SIGKILL: the daemon dies without a word, as on a power cut."""
        daemons.kill(self.process)

    def log(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "(no log)"


class HdfsCluster:
    """A running HDFS on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        home: pathlib.Path,
        workdir: pathlib.Path,
        datanodes: int = 1,
        replication: int | None = None,
        namenode_jvm_opts: str = "",
    ) -> None:
        self.home = home
        # More JVM options of the NameNode daemon (not of the format or the clients), after HDFS_NAMENODE_OPTS:
        # e.g. the JMX exporter agent, as the role's hadoop-env.sh adds it.
        self.namenode_jvm_opts = namenode_jvm_opts
        self.workdir = workdir
        # Every block on every DataNode, up to HDFS's default of 3, unless said otherwise.
        self.replication = min(datanodes, 3) if replication is None else replication
        self.rpc_port = pick_free_port()
        self.http_port = pick_free_port()
        self.url = f"hdfs://127.0.0.1:{self.rpc_port}"
        self.webhdfs_url = f"webhdfs://127.0.0.1:{self.http_port}"
        self.namenode = _Daemon(self, "namenode", "namenode", self._conf("namenode", {}))
        self.datanodes = [
            _Daemon(self, "datanode", f"datanode{index}", self._datanode_conf(index))
            for index in range(1, datanodes + 1)
        ]

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, home: pathlib.Path, workdir: pathlib.Path, timeout_s: float = 120, **options: Any
    ) -> Iterator[HdfsCluster]:
        """Formats, starts and waits for the cluster (``options`` as for the constructor); stops it on the
        way out, also after a failure."""
        cluster = cls(home, workdir, **options)
        try:
            cluster.start(timeout_s)
            yield cluster
        finally:
            cluster.stop()

    def _conf(self, name: str, extra: dict[str, object]) -> pathlib.Path:
        conf = self.workdir / "conf" / name
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "core-site.xml").write_text(site_xml({"fs.defaultFS": self.url}))
        hdfs = {
            "dfs.namenode.name.dir": self.workdir / "name",
            "dfs.namenode.rpc-address": f"127.0.0.1:{self.rpc_port}",
            "dfs.namenode.http-address": f"127.0.0.1:{self.http_port}",
            "dfs.replication": self.replication,
            # DataNodes on one host: the NameNode tells them apart by port, not by hostname.
            "dfs.namenode.datanode.registration.ip-hostname-check": "false",
            "dfs.heartbeat.interval": 1,
            # A killed DataNode is declared dead after 2 recheck intervals + 10 heartbeats = 20 s, not 10.5 min.
            "dfs.namenode.heartbeat.recheck-interval": 5000,
            "dfs.namenode.safemode.extension": 0,
            **extra,
        }
        (conf / "hdfs-site.xml").write_text(site_xml(hdfs))
        (conf / "log4j.properties").write_text((self.home / "etc/hadoop/log4j.properties").read_text())
        return conf

    def _datanode_conf(self, index: int) -> pathlib.Path:
        return self._conf(
            f"datanode{index}",
            {
                "dfs.datanode.data.dir": self.workdir / f"data{index}",
                "dfs.datanode.address": f"127.0.0.1:{pick_free_port()}",
                "dfs.datanode.http.address": f"127.0.0.1:{pick_free_port()}",
                "dfs.datanode.ipc.address": f"127.0.0.1:{pick_free_port()}",
                "dfs.datanode.hostname": "127.0.0.1",
            },
        )

    def env(self, conf_dir: pathlib.Path | None = None, daemon: str = "") -> dict[str, str]:
        """The environment of bin/hdfs; ``daemon="namenode"`` adds ``namenode_jvm_opts`` (the daemon only)."""
        extra = f" {self.namenode_jvm_opts}" if daemon == "namenode" and self.namenode_jvm_opts else ""
        return {
            **os.environ,
            "JAVA_HOME": java_home(),
            "HADOOP_CONF_DIR": str(conf_dir or self.namenode.conf_dir),
            "HADOOP_LOG_DIR": str(self.workdir / "logs"),
            "HADOOP_ROOT_LOGGER": "WARN,console",
            "HDFS_NAMENODE_OPTS": NAMENODE_OPTS + extra,
            "HDFS_DATANODE_OPTS": DATANODE_OPTS,
            "HADOOP_CLIENT_OPTS": CLIENT_OPTS,
        }

    def hdfs(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """``bin/hdfs ARGS`` as a client of this cluster."""
        return subprocess.run(
            [str(self.home / "bin" / "hdfs"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start(self, timeout_s: float = 120) -> None:
        self.launch(timeout_s)
        self.wait_until_ready(timeout_s)

    def launch(self, timeout_s: float = 120) -> None:
        """Formats the NameNode (the first time) and starts every daemon, without waiting for them: call
        :meth:`wait_until_ready` before using the cluster (:meth:`start` does both)."""
        if not (self.workdir / "name" / "current" / "VERSION").exists():
            formatted = self.hdfs("namenode", "-format", "-nonInteractive", timeout_s=timeout_s)
            if formatted.returncode != 0:
                raise RuntimeError(
                    f"hdfs namenode -format exited {formatted.returncode}: {formatted.stderr[-2000:]}"
                )
        self.namenode.start()
        for datanode in self.datanodes:
            datanode.start()

    def restart_namenode(self, timeout_s: float = 120) -> None:
        """Stops the NameNode (SIGTERM) and starts it again on the same metadata and ports."""
        self.namenode.stop()
        self.namenode.start()
        self.wait_until_ready(timeout_s)

    def stop(self) -> None:
        for datanode in self.datanodes:
            datanode.stop()
        self.namenode.stop()

    def jmx(self, bean: str) -> dict:
        """One bean of the NameNode's /jmx (e.g. ``Hadoop:service=NameNode,name=FSNamesystemState``)."""
        url = f"http://127.0.0.1:{self.http_port}/jmx?qry={bean}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            beans = json.load(answer)["beans"]
        return beans[0] if beans else {}

    def live_datanodes(self) -> int:
        return int(self.jmx("Hadoop:service=NameNode,name=FSNamesystemState").get("NumLiveDataNodes", 0))

    def wait_until_ready(self, timeout_s: float, datanodes: int | None = None) -> None:
        """Until the NameNode is out of safe mode with ``datanodes`` (all that run) live DataNodes and no
        missing block. A restarted NameNode leaves safe mode before every DataNode has sent its block
        report (measured: ~10 s with a file's only block still missing), so the last is waited for too."""
        wanted = sum(d.alive() for d in self.datanodes) if datanodes is None else datanodes
        deadline = time.monotonic() + timeout_s
        while True:
            for daemon in (self.namenode, *self.datanodes):
                if (
                    daemon.process is not None
                    and daemon.process.poll() is not None
                    and daemon.name == "namenode"
                ):
                    raise RuntimeError(
                        f"the NameNode exited with {daemon.process.returncode}:\n{daemon.log()}"
                    )
            with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
                info = self.jmx("Hadoop:service=NameNode,name=NameNodeInfo")
                state = self.jmx("Hadoop:service=NameNode,name=FSNamesystem")
                if (
                    info
                    and not info.get("Safemode")
                    and self.live_datanodes() >= wanted
                    and state.get("MissingBlocks") == 0
                ):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"HDFS at {self.url} was not ready within {timeout_s:g} s:\n{self.namenode.log()}"
                )
            time.sleep(0.3)
