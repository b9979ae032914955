"""Runtime helpers shared by the fake_hadoop_release and fake_kafka_release TEST DOUBLES.

This file is shipped inside both fake release tarballs (next to the fake `hdfs` and Kafka programs) and
runs on the test hosts with the system python3 only: no third-party imports. It gives the doubles what
the real Java programs have in common: Java properties and Hadoop XML configuration files, a JAVA_HOME
that must point at a real `bin/java` (the roles install OpenJDK; the doubles do not run it), atomic
writes, listening sockets, and a small JSON-lines protocol between the doubles' processes. That protocol
stands in for Hadoop RPC and the Kafka wire protocol; it is NOT either of them.
"""

from __future__ import annotations  # the EL 9 test images run Python 3.9

import json
import os
import pathlib
import socket
import socketserver
import sys
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable


class Refused(Exception):
    """A failure the real program would report before exiting with status 1."""


def read_properties(path: pathlib.Path) -> dict[str, str]:
    """A Java properties file (key=value, key:value or key value; # and ! comments; \\ continuations)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise Refused(f"cannot read {path}: {error.strerror}") from None
    properties: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.lstrip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        separators = [index for index in (line.find("="), line.find(":")) if index >= 0]
        if separators:
            key, value = line[: min(separators)], line[min(separators) + 1 :]
        else:
            key, _, value = line.partition(" ")
        properties[key.strip()] = value.strip()
    return properties


def read_hadoop_xml(path: pathlib.Path) -> dict[str, str]:
    """The <property><name/><value/></property> pairs of a Hadoop *-site.xml file."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise Refused(f"cannot read {path}: {error}") from None
    return {
        (prop.findtext("name") or "").strip(): (prop.findtext("value") or "").strip()
        for prop in root.iter("property")
    }


def require_java(java_home: str | None) -> None:
    """Fail as the real launch scripts do when JAVA_HOME does not hold a Java runtime."""
    if java_home is None:
        return
    if not os.access(pathlib.Path(java_home) / "bin" / "java", os.X_OK):
        raise Refused(f"ERROR: JAVA_HOME {java_home} does not exist or holds no bin/java.")


def write_atomic(path: pathlib.Path, text: str, mode: int = 0o644) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """'host:port', 'host' or ':port' (any address) -> (host, port)."""
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
    return host, int(port) if port else default_port


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve_json_lines(port: int, answer: Callable[[dict], dict]) -> None:
    """Answer one JSON object per line on `port` (all addresses), in a background thread."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                    reply = answer(request)
                except (ValueError, KeyError, TypeError) as error:
                    reply = {"error": f"malformed request: {error}"}
                except Refused as error:
                    reply = {"error": str(error)}
                self.wfile.write((json.dumps(reply) + "\n").encode())

    _start(_Server(("", port), Handler))


def serve_http(port: int, handler: type) -> None:
    """Serve `handler` (an http.server.BaseHTTPRequestHandler subclass) on `port`, in a background thread."""
    import http.server

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    _start(Server(("", port), handler))


def _start(server: socketserver.BaseServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


def call(host: str, port: int, request: dict, timeout: float = 5.0) -> dict:
    """Send one JSON-lines request to another process of the double; raise Refused when it fails."""
    try:
        with socket.create_connection((host, port), timeout) as connection:
            connection.sendall((json.dumps(request) + "\n").encode())
            reply = json.loads(connection.makefile().readline() or "{}")
    except (OSError, ValueError) as error:
        raise Refused(f"cannot reach {host}:{port}: {error}") from None
    if "error" in reply:
        raise Refused(reply["error"])
    return reply


def run_main(main: Callable[[list[str]], int]) -> None:
    """Run a double's main(argv): a Refused failure prints its message and exits 1, as the real CLI does."""
    try:
        sys.exit(main(sys.argv[1:]))
    except Refused as error:
        print(error, file=sys.stderr)
        sys.exit(1)
