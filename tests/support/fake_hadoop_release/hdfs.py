"""fake_hadoop_release: a TEST DOUBLE of Apache Hadoop's `bin/hdfs`, for molecule scenarios.

It stands in for the Hadoop release tarball, which cannot be downloaded on the build machine, and
implements only the `hdfs` command line that the hdfs role and its systemd units call, with the real
program's semantics where the role depends on them:

- `hdfs namenode -format -nonInteractive [-force]` writes <name dir>/current/VERSION with a new
  clusterID (CID-<uuid>); with data already there and no -force it prints "Not formatting." and exits 1,
  as Hadoop does. The namespace lives in current/fsimage.json (root directory owned by the formatter).
- `hdfs namenode` refuses an unformatted directory, then listens on the RPC and HTTP ports of
  hdfs-site.xml: HTTP serves WebHDFS GETFILESTATUS/LISTSTATUS and /jmx FSNamesystemState (live DataNodes).
- `hdfs datanode` listens on its data, HTTP and IPC ports and registers with the NameNode of
  fs.defaultFS every few seconds; on the first registration it writes <data dir>/current/VERSION with
  the NameNode's clusterID, and it exits on a clusterID mismatch ("Incompatible clusterIDs"), as Hadoop does.
- `hdfs dfs -stat FORMAT PATH | -mkdir [-p] PATH | -chown OWNER:GROUP PATH | -chmod MODE PATH | -ls PATH`
  against the NameNode, as the calling user (only the NameNode's user, the superuser, may chown).
- Every program reads hadoop-env.sh and fails when its JAVA_HOME holds no bin/java (Java is not run).

Not implemented (exit 2, named): journalnode, zkfc, -bootstrapStandby, -formatZK (HA), blocks, files.
The RPC port speaks the JSON-lines protocol of fake_service_runtime, not Hadoop RPC.
"""

from __future__ import annotations  # the EL 9 test images run Python 3.9

import datetime
import http.server
import json
import os
import pathlib
import pwd
import re
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fake_service_runtime import (  # shipped next to this file in the tarball
    Refused,
    call,
    read_hadoop_xml,
    require_java,
    run_main,
    serve_http,
    serve_json_lines,
    write_atomic,
)

HOME = pathlib.Path(__file__).resolve().parents[1]
HEARTBEAT_S = 3
DATANODE_DEAD_S = 30
LAYOUT_VERSION = -67


def conf_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("HADOOP_CONF_DIR") or HOME / "etc" / "hadoop")


def site() -> dict[str, str]:
    """core-site.xml and hdfs-site.xml, merged; JAVA_HOME from hadoop-env.sh checked on the way."""
    directory = conf_dir()
    env_file = directory / "hadoop-env.sh"
    java_home = os.environ.get("JAVA_HOME")
    if env_file.exists():
        found = re.findall(r"(?m)^\s*export\s+JAVA_HOME=[\"']?([^\"'\s]+)", env_file.read_text())
        java_home = found[-1] if found else java_home
    if java_home is None:
        raise Refused("ERROR: JAVA_HOME is not set and could not be found.")
    require_java(java_home)
    return read_hadoop_xml(directory / "core-site.xml") | read_hadoop_xml(directory / "hdfs-site.xml")


def local_dirs(settings: dict[str, str], key: str) -> list[pathlib.Path]:
    value = settings.get(key, "")
    if not value:
        raise Refused(f"{key} is not set in {conf_dir() / 'hdfs-site.xml'}")
    return [pathlib.Path(item.strip().removeprefix("file://")) for item in value.split(",") if item.strip()]


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def namenode_address(settings: dict[str, str]) -> tuple[str, int]:
    default_fs = urllib.parse.urlparse(settings.get("fs.defaultFS", ""))
    if default_fs.scheme != "hdfs" or not default_fs.hostname:
        raise Refused(f"fs.defaultFS is {settings.get('fs.defaultFS')!r}; expected hdfs://<namenode>:<port>")
    return default_fs.hostname, default_fs.port or 8020


def user_name() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def read_version(directory: pathlib.Path) -> dict[str, str]:
    version = directory / "current" / "VERSION"
    if not version.exists():
        return {}
    return dict(
        line.split("=", 1)
        for line in version.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )


def write_version(directory: pathlib.Path, fields: dict[str, str]) -> None:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
    lines = [f"#{stamp}", *(f"{key}={value}" for key, value in fields.items())]
    write_atomic(directory / "current" / "VERSION", "\n".join(lines) + "\n", 0o644)


# --- NameNode -----------------------------------------------------------------------------------------


def format_namenode(args: list[str]) -> int:
    settings = site()
    name_dirs = local_dirs(settings, "dfs.namenode.name.dir")
    formatted = [directory for directory in name_dirs if read_version(directory)]
    if formatted and "-force" not in args:
        if "-nonInteractive" in args:
            print(
                f"Running in non-interactive mode, and data appears to exist in Storage Directory "
                f"{formatted[0]}. Not formatting.",
                file=sys.stderr,
            )
            return 1
        raise Refused(f"Re-format filesystem in Storage Directory {formatted[0]} ? (Y or N) Invalid input")
    cluster_id = f"CID-{uuid.uuid4()}"
    namespace_id = str(uuid.uuid4().int % 2**31)
    root = {"/": {"type": "DIRECTORY", "owner": user_name(), "group": "supergroup", "permission": "755"}}
    for directory in name_dirs:
        (directory / "current").mkdir(parents=True, exist_ok=True)
        write_atomic(directory / "current" / "fsimage.json", json.dumps(root), 0o600)
        write_version(
            directory,
            {
                "namespaceID": namespace_id,
                "clusterID": cluster_id,
                "cTime": str(int(time.time() * 1000)),
                "storageType": "NAME_NODE",
                "blockpoolID": f"BP-{namespace_id}-fake-{int(time.time() * 1000)}",
                "layoutVersion": str(LAYOUT_VERSION),
            },
        )
        print(f"Storage directory {directory} has been successfully formatted.")
    return 0


class Namespace:
    """The NameNode's directory tree (fsimage.json in every name dir) and its DataNode registrations."""

    def __init__(self, name_dirs: list[pathlib.Path], superuser: str, supergroup: str) -> None:
        self.name_dirs, self.superuser, self.supergroup = name_dirs, superuser, supergroup
        self.cluster_id = read_version(name_dirs[0])["clusterID"]
        self.tree: dict[str, dict] = json.loads((name_dirs[0] / "current" / "fsimage.json").read_text())
        self.datanodes: dict[str, float] = {}
        self.lock = threading.Lock()

    def save(self) -> None:
        for directory in self.name_dirs:
            write_atomic(directory / "current" / "fsimage.json", json.dumps(self.tree, sort_keys=True), 0o600)

    def status(self, path: str) -> dict:
        if path not in self.tree:
            raise Refused(f"`{path}': No such file or directory")
        return {"path": path, **self.tree[path]}

    def answer(self, request: dict) -> dict:
        op = request["op"]
        with self.lock:
            if op == "register":
                if request["clusterID"] not in (None, self.cluster_id):
                    raise Refused(
                        f"Incompatible clusterIDs: namenode clusterID = {self.cluster_id}; "
                        f"datanode clusterID = {request['clusterID']}"
                    )
                self.datanodes[request["datanode"]] = time.time()
                return {"clusterID": self.cluster_id}
            path = posix_path(request["path"])
            user = request["user"]
            if op == "stat":
                return self.status(path)
            if op == "list":
                return {"entries": self.children(path)}
            if op == "mkdir":
                return self.mkdir(path, user, bool(request.get("parents")))
            if op == "chown":
                if user != self.superuser:
                    raise Refused(
                        f"chown: changing ownership of '{path}': Permission denied. user={user} is not the owner of inode={path}"
                    )
                entry = self.tree[self.status(path)["path"]]
                entry["owner"], entry["group"] = request["owner"], request["group"]
            elif op == "chmod":
                entry = self.tree[self.status(path)["path"]]
                if user not in (self.superuser, entry["owner"]):
                    raise Refused(f"chmod: changing permissions of '{path}': Permission denied")
                entry["permission"] = format(int(request["mode"], 8), "o")
            else:
                raise Refused(f"unknown operation {op!r}")
            self.save()
            return {"ok": True}

    def children(self, path: str) -> list[dict]:
        self.status(path)
        prefix = path.rstrip("/") + "/"
        names = [name for name in self.tree if name.startswith(prefix) and "/" not in name[len(prefix) :]]
        return [self.status(name) for name in sorted(names) if name != path]

    def mkdir(self, path: str, user: str, parents: bool) -> dict:
        missing = []
        current = path
        while current not in self.tree:
            missing.append(current)
            current = posix_path(str(pathlib.PurePosixPath(current).parent))
        if len(missing) > 1 and not parents:
            raise Refused(f"mkdir: `{missing[-1]}': No such file or directory")
        if not missing and not parents:
            raise Refused(f"mkdir: `{path}': File exists")
        parent = self.tree[current]
        if user != self.superuser and user != parent["owner"]:
            raise Refused(f'mkdir: Permission denied: user={user}, access=WRITE, inode="{current}"')
        for new in reversed(missing):
            self.tree[new] = {
                "type": "DIRECTORY",
                "owner": user,
                "group": parent["group"],
                "permission": "755",
            }
        self.save()
        return {"ok": True}

    def live_datanodes(self) -> int:
        return sum(1 for seen in self.datanodes.values() if time.time() - seen < DATANODE_DEAD_S)


def posix_path(path: str) -> str:
    if not path.startswith("/"):
        raise Refused(f"`{path}': the fake hdfs takes absolute paths only")
    normal = str(pathlib.PurePosixPath(path))
    return normal if normal != "//" else "/"


def webhdfs_handler(namespace: Namespace) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/jmx":
                beans = [
                    {
                        "name": "Hadoop:service=NameNode,name=FSNamesystemState",
                        "NumLiveDataNodes": namespace.live_datanodes(),
                        "NumDeadDataNodes": len(namespace.datanodes) - namespace.live_datanodes(),
                    }
                ]
                return self.reply(200, {"beans": beans})
            if not url.path.startswith("/webhdfs/v1/"):
                return self.reply(404, {"RemoteException": {"message": f"no such page {url.path}"}})
            op = query.get("op", [""])[0].upper()
            path = "/" + url.path.removeprefix("/webhdfs/v1/").strip("/")
            if op not in ("GETFILESTATUS", "LISTSTATUS"):
                return self.reply(
                    400,
                    {
                        "RemoteException": {
                            "exception": "IllegalArgumentException",
                            "message": f'Invalid value for webhdfs parameter "op": {op}',
                        }
                    },
                )
            try:
                with namespace.lock:
                    if op == "GETFILESTATUS":
                        return self.reply(200, {"FileStatus": file_status(namespace.status(path))})
                    statuses = [file_status(entry) for entry in namespace.children(path)]
                return self.reply(200, {"FileStatuses": {"FileStatus": statuses}})
            except Refused as error:
                return self.reply(
                    404, {"RemoteException": {"exception": "FileNotFoundException", "message": str(error)}}
                )

        def reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def file_status(entry: dict) -> dict:
    return {
        "pathSuffix": entry["path"].rpartition("/")[2],
        "type": entry["type"],
        "owner": entry["owner"],
        "group": entry["group"],
        "permission": entry["permission"],
    }


def run_namenode() -> int:
    settings = site()
    name_dirs = local_dirs(settings, "dfs.namenode.name.dir")
    if not read_version(name_dirs[0]):
        raise Refused(f"NameNode is not formatted: {name_dirs[0]}/current/VERSION is missing.")
    namespace = Namespace(
        name_dirs, user_name(), settings.get("dfs.permissions.superusergroup", "supergroup")
    )
    rpc_port = port_of(settings.get("dfs.namenode.rpc-address", ":8020"))
    http_port = port_of(settings.get("dfs.namenode.http-address", ":9870"))
    serve_json_lines(rpc_port, namespace.answer)
    serve_http(http_port, webhdfs_handler(namespace))
    print(
        f"NameNode RPC up at: 0.0.0.0:{rpc_port}; Web-server up at: 0.0.0.0:{http_port}; clusterID {namespace.cluster_id}",
        flush=True,
    )
    while True:
        time.sleep(3600)


# --- DataNode -----------------------------------------------------------------------------------------


def run_datanode() -> int:
    settings = site()
    data_dirs = local_dirs(settings, "dfs.datanode.data.dir")
    for key, default in (("dfs.datanode.address", 9866), ("dfs.datanode.ipc.address", 9867)):
        serve_json_lines(
            port_of(settings.get(key, f":{default}")),
            lambda request: {"error": "the fake DataNode stores no blocks"},
        )
    serve_http(port_of(settings.get("dfs.datanode.http.address", ":9864")), datanode_http_handler())
    namenode = namenode_address(settings)
    name = os.uname().nodename
    print(f"DataNode {name} up; registering with {namenode[0]}:{namenode[1]}", flush=True)
    registered = False
    while True:
        known = read_version(data_dirs[0]).get("clusterID")
        try:
            reply = call(*namenode, {"op": "register", "datanode": name, "clusterID": known})
        except Refused as error:
            if "Incompatible clusterIDs" in str(error):
                raise
            print(f"Retrying connect to server: {namenode[0]}/{namenode[1]}: {error}", flush=True)
        else:
            if not known:
                for directory in data_dirs:
                    write_version(
                        directory,
                        {"clusterID": reply["clusterID"], "storageType": "DATA_NODE", "layoutVersion": "-57"},
                    )
            if not registered:
                print(f"Block pool registered with NameNode {namenode[0]}:{namenode[1]}", flush=True)
                registered = True
        time.sleep(HEARTBEAT_S)


def datanode_http_handler() -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"beans": [{"name": "Hadoop:service=DataNode,name=DataNodeInfo"}]}'
            self.send_response(200 if self.path.startswith("/jmx") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


# --- hdfs dfs -----------------------------------------------------------------------------------------


def dfs(args: list[str]) -> int:
    settings = site()
    namenode = namenode_address(settings)
    if not args:
        raise Refused(
            "Usage: hdfs dfs [-stat FORMAT PATH] [-mkdir [-p] PATH] [-chown OWNER:GROUP PATH] [-chmod MODE PATH] [-ls PATH]"
        )
    command, rest = args[0], args[1:]
    user = user_name()
    if command == "-stat" and len(rest) == 2:
        entry = call(*namenode, {"op": "stat", "path": rest[1], "user": user})
        kinds = {"DIRECTORY": "directory", "FILE": "regular file"}
        fields = {
            "F": kinds[entry["type"]],
            "u": entry["owner"],
            "g": entry["group"],
            "a": entry["permission"],
            "n": entry["path"].rpartition("/")[2],
        }
        print(re.sub(r"%([Fugan])", lambda match: fields[match.group(1)], rest[0]))
    elif command == "-mkdir" and rest:
        parents = rest[0] == "-p"
        for path in rest[1:] if parents else rest:
            call(*namenode, {"op": "mkdir", "path": path, "user": user, "parents": parents})
    elif command == "-chown" and len(rest) == 2 and ":" in rest[0]:
        owner, group = rest[0].split(":", 1)
        call(*namenode, {"op": "chown", "path": rest[1], "user": user, "owner": owner, "group": group})
    elif command == "-chmod" and len(rest) == 2 and re.fullmatch(r"0?[0-7]{3}", rest[0]):
        call(*namenode, {"op": "chmod", "path": rest[1], "user": user, "mode": rest[0]})
    elif command == "-ls" and len(rest) == 1:
        for entry in call(*namenode, {"op": "list", "path": rest[0], "user": user})["entries"]:
            print(f"d{entry['permission']} - {entry['owner']} {entry['group']} 0 {entry['path']}")
    else:
        raise Refused(f"{command}: the fake hdfs does not implement these arguments: {' '.join(rest)}")
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        raise Refused("Usage: hdfs [namenode [-format -nonInteractive [-force]] | datanode | dfs ...]")
    command, rest = argv[0], argv[1:]
    if command == "namenode" and "-format" in rest:
        return format_namenode(rest)
    if command == "namenode" and not rest:
        return run_namenode()
    if command == "datanode" and not rest:
        return run_datanode()
    if command == "dfs":
        return dfs(rest)
    print(f"fake_hadoop_release: `hdfs {' '.join(argv)}` is not part of this test double", file=sys.stderr)
    return 2


if __name__ == "__main__":
    run_main(main)
