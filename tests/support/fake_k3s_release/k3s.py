#!/usr/bin/python3
"""fake_k3s_release: a TEST DOUBLE of the k3s binary, for molecule scenarios where k3s cannot run.

It stands in for the real `k3s` release artifact in containers that have no k3s download, no
kernel modules and no container runtime. It has the CLI surface the k3s roles, the systemd unit and
the upgrade/snapshot playbooks use, and it behaves like k3s where the roles depend on it:

- `k3s --version`; `k3s server` / `k3s agent` read /etc/rancher/k3s/config.yaml, reject keys that are
  not k3s flags (real k3s fails on unknown flags too), read the token file, and tell systemd READY=1
  (Type=notify) only once the node is up: the first server after it initialised the cluster, a
  joining node after the first server accepted its token over TCP port 6443.
- servers listen on 6443 (API), 2379 and 2380 (etcd); every node on 10250 (kubelet): other nodes
  reach them only through the firewall rules the roles set.
- the first server keeps the member list (join order, versions, labels, taints, cordons) and answers
  `k3s kubectl get nodes|get node N -o json|drain|cordon|uncordon` from any server.
- `k3s etcd-snapshot save|ls|prune|delete` and `k3s server --cluster-reset
  --cluster-reset-restore-path=P` work on a JSON stand-in of the etcd data; after a reset, servers
  that still hold the old etcd data are refused until it is deleted (as the k3s restore procedure says).

It does NOT run Kubernetes: no pods, no containerd, no real etcd, no TLS, no CNI. Every invocation is
appended to /var/log/fake-k3s/calls.jsonl so tests can check what the playbooks ran, and in which order.
"""

import contextlib
import hashlib
import json
import os
import pathlib
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time

FAKE_K3S_VERSION = "v0.0.0+k3s0"  # replaced by build.py with the release version being faked

CONFIG_FILE = pathlib.Path("/etc/rancher/k3s/config.yaml")
KUBECONFIG = pathlib.Path("/etc/rancher/k3s/k3s.yaml")
DATA_DIR = pathlib.Path("/var/lib/rancher/k3s")
SERVER_DIR = DATA_DIR / "server"
DB_DIR = SERVER_DIR / "db"
CLUSTER_ID_FILE = DB_DIR / "etcd" / "cluster-id"
STATE_FILE = DB_DIR / "fake-cluster.json"
RESET_FLAG = DB_DIR / "reset-flag"
DEFAULT_SNAPSHOT_DIR = DB_DIR / "snapshots"
CALL_LOG = pathlib.Path("/var/log/fake-k3s/calls.jsonl")
API_PORT = 6443
JOIN_TIMEOUT_S = 120
HEARTBEAT_S = 2

# The k3s flags (config.yaml keys) the fake accepts, per mode. Anything else fails, as with real k3s.
NODE_KEYS = {
    "token",
    "token-file",
    "server",
    "node-name",
    "node-ip",
    "node-external-ip",
    "node-label",
    "node-taint",
    "kubelet-arg",
    "kube-proxy-arg",
    "protect-kernel-defaults",
    "selinux",
    "data-dir",
    "flannel-iface",
    "with-node-id",
    "debug",
    "prefer-bundled-bin",
    "system-default-registry",
}
SERVER_KEYS = NODE_KEYS | {
    "cluster-init",
    "tls-san",
    "write-kubeconfig-mode",
    "cluster-cidr",
    "service-cidr",
    "cluster-dns",
    "disable",
    "secrets-encryption",
    "etcd-snapshot-schedule-cron",
    "etcd-snapshot-retention",
    "etcd-snapshot-dir",
    "etcd-snapshot-compress",
    "kube-apiserver-arg",
    "kube-controller-manager-arg",
    "kube-scheduler-arg",
    "flannel-backend",
    "advertise-address",
    "bind-address",
    "https-listen-port",
    "agent-token",
    "agent-token-file",
    "disable-network-policy",
    "disable-kube-proxy",
    "embedded-registry",
    "default-local-storage-path",
    "egress-selector-mode",
    "disable-cloud-controller",
}
AGENT_KEYS = NODE_KEYS


class Refused(Exception):
    """A failure k3s would report and exit on."""


def log_call(argv: list[str]) -> None:
    CALL_LOG.parent.mkdir(parents=True, exist_ok=True)
    with CALL_LOG.open("a") as stream:
        stream.write(json.dumps({"t": time.time(), "pid": os.getpid(), "argv": argv}) + "\n")


def write_atomic(path: pathlib.Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def load_config(mode: str, allowed: set[str]) -> dict:
    import yaml  # python3-yaml: in the molecule images, not needed for --version

    config = {}
    if CONFIG_FILE.exists():
        config = yaml.safe_load(CONFIG_FILE.read_text()) or {}
    if not isinstance(config, dict):
        raise Refused(f"{CONFIG_FILE}: expected a mapping of flag names to values")
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise Refused(f"{CONFIG_FILE}: flag provided but not defined for k3s {mode}: {', '.join(unknown)}")
    token = config.get("token")
    if not token and config.get("token-file"):
        token = pathlib.Path(config["token-file"]).read_text().strip()
    if not token:
        raise Refused("no token: set token or token-file")
    config["_token_sha256"] = hashlib.sha256(token.encode()).hexdigest()
    config.setdefault("node-name", socket.gethostname().lower())
    return config


def as_list(value) -> list:
    return value if isinstance(value, list) else ([] if value in (None, "") else [value])


def sd_notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def request(url_or_host: str, message: dict, timeout: float = 10.0) -> dict:
    host = url_or_host.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    with socket.create_connection((host, API_PORT), timeout=timeout) as sock:
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = sock.makefile().readline()
    if not data:
        raise Refused(f"{host}:{API_PORT} closed the connection")
    return json.loads(data)


class ClusterState:
    """The first server's member list: the stand-in for what etcd holds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else None

    def initialise(self) -> None:
        if self.data is None:
            self.data = {"cluster_id": secrets.token_hex(8), "join_order": [], "members": {}}
            self.save()
        write_atomic(CLUSTER_ID_FILE, self.data["cluster_id"])

    def save(self) -> None:
        write_atomic(STATE_FILE, json.dumps(self.data, indent=1, sort_keys=True))

    def register(self, node: dict) -> None:
        with self.lock:
            now = time.time()
            member = self.data["members"].setdefault(
                node["name"], {"first_joined": now, "unschedulable": False}
            )
            member.update(
                role=node["role"],
                version=node["version"],
                labels=node["labels"],
                taints=node["taints"],
                last_joined=now,
                ready=True,
            )
            if node["name"] not in self.data["join_order"]:
                self.data["join_order"].append(node["name"])
            self.save()

    def set_ready(self, name: str, ready: bool) -> None:
        with self.lock:
            if name in self.data["members"]:
                self.data["members"][name]["ready"] = ready
                self.save()

    def kubectl(self, args: list[str]) -> dict:
        with self.lock:
            return kubectl_on_state(self, args)


def node_object(name: str, member: dict) -> dict:
    labels = dict(item.split("=", 1) for item in member["labels"])
    labels["kubernetes.io/hostname"] = name
    if member["role"] == "server":
        labels["node-role.kubernetes.io/control-plane"] = "true"
        labels["node-role.kubernetes.io/etcd"] = "true"
    taints = []
    for item in member["taints"]:
        key_value, effect = item.rsplit(":", 1)
        key, _, value = key_value.partition("=")
        taints.append({"key": key, "value": value, "effect": effect})
    if member["unschedulable"]:
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": member["unschedulable"], "taints": taints},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if member["ready"] else "False"}],
            "nodeInfo": {"kubeletVersion": member["version"]},
        },
    }


def kubectl_on_state(state: ClusterState, args: list[str]) -> dict:
    members = state.data["members"]
    words, output = [], ""
    rest = iter(args)
    for arg in rest:
        if arg in ("-o", "--output"):
            output = next(rest, "")
        elif arg.startswith(("-o", "--output=")):
            output = arg.removeprefix("--output=").removeprefix("-o")
        elif not arg.startswith("-"):
            words.append(arg)
    output_json = output == "json"

    def missing(name: str) -> dict:
        return {"rc": 1, "stdout": "", "stderr": f'Error from server (NotFound): nodes "{name}" not found\n'}

    if words[:2] == ["get", "nodes"] or words == ["get", "node"]:
        if output_json:
            items = [node_object(n, members[n]) for n in state.data["join_order"]]
            return {"rc": 0, "stdout": json.dumps({"kind": "List", "items": items}), "stderr": ""}
        lines = ["NAME STATUS ROLES VERSION"]
        for name in state.data["join_order"]:
            m = members[name]
            status = ("Ready" if m["ready"] else "NotReady") + (
                ",SchedulingDisabled" if m["unschedulable"] else ""
            )
            roles = "control-plane,etcd" if m["role"] == "server" else "<none>"
            lines.append(f"{name} {status} {roles} {m['version']}")
        return {"rc": 0, "stdout": "\n".join(lines) + "\n", "stderr": ""}
    if words[:2] == ["get", "node"] and len(words) == 3:
        name = words[2]
        if name not in members:
            return missing(name)
        return {"rc": 0, "stdout": json.dumps(node_object(name, members[name])), "stderr": ""}
    if words and words[0] in ("drain", "cordon", "uncordon") and len(words) == 2:
        verb, name = words
        if name not in members:
            return missing(name)
        member = members[name]
        want = verb != "uncordon"
        done = "cordoned" if want else "uncordoned"
        lines = [f"node/{name} already {done}" if member["unschedulable"] == want else f"node/{name} {done}"]
        member["unschedulable"] = want
        if verb == "drain":
            lines.append(f"node/{name} drained")
        state.save()
        return {"rc": 0, "stdout": "\n".join(lines) + "\n", "stderr": ""}
    return {
        "rc": 1,
        "stdout": "",
        "stderr": f"fake_k3s_release: 'kubectl {' '.join(args)}' is not part of the test double\n",
    }


class Node:
    """A running `k3s server` or `k3s agent`."""

    def __init__(self, mode: str, config: dict) -> None:
        self.mode = mode
        self.config = config
        self.name = config["node-name"]
        self.first = mode == "server" and not config.get("server")
        self.state = ClusterState() if self.first else None
        self.servers: list[socketserver.ThreadingTCPServer] = []

    def describe(self) -> dict:
        return {
            "name": self.name,
            "role": self.mode,
            "version": FAKE_K3S_VERSION,
            "labels": as_list(self.config.get("node-label")),
            "taints": as_list(self.config.get("node-taint")),
        }

    def listen(self) -> None:
        ports = [API_PORT, 2379, 2380, 10250] if self.mode == "server" else [10250]
        node = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline()
                if not line:
                    return
                reply = node.answer(json.loads(line))
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        for port in ports:
            try:
                server = socketserver.ThreadingTCPServer(("0.0.0.0", port), Handler)
            except OSError as error:
                raise Refused(f"cannot listen on port {port}: {error.strerror}") from error
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)

    def answer(self, message: dict) -> dict:
        op = message.get("op")
        if op == "ping":
            return {"ok": True, "name": self.name}
        if message.get("token_sha256") != self.config["_token_sha256"]:
            return {"ok": False, "error": "token is not valid for this cluster"}
        if not self.first:  # a joined server passes cluster requests to the first server
            try:
                return request(self.config["server"], message)
            except (OSError, Refused) as error:
                return {
                    "ok": False,
                    "error": f"cannot reach the cluster: {error}",
                    "rc": 1,
                    "stdout": "",
                    "stderr": str(error),
                }
        if op == "join":
            self.state.register(message["node"])
            return {"ok": True, "cluster_id": self.state.data["cluster_id"]}
        if op == "leave":
            self.state.set_ready(message["name"], False)
            return {"ok": True}
        if op == "kubectl":
            return {"ok": True, **self.state.kubectl(message["args"])}
        if op == "snapshot":
            return {"ok": True, "state": self.state.data}
        return {"ok": False, "error": f"unknown request {op!r}"}

    def join(self) -> None:
        url = self.config["server"]
        deadline = time.time() + JOIN_TIMEOUT_S
        while True:
            try:
                reply = request(
                    url, {"op": "join", "token_sha256": self.config["_token_sha256"], "node": self.describe()}
                )
                break
            except OSError as error:
                if time.time() > deadline:
                    raise Refused(f"failed to join {url}: {error}") from error
                time.sleep(1)
        if not reply.get("ok"):
            raise Refused(f"failed to join {url}: {reply.get('error')}")
        if self.mode == "server":
            previous = CLUSTER_ID_FILE.read_text().strip() if CLUSTER_ID_FILE.exists() else None
            if previous and previous != reply["cluster_id"]:
                raise Refused(
                    f"the etcd data in {DB_DIR} belongs to an earlier cluster (it was reset); back up and delete "
                    f"{DB_DIR} on this server, then start k3s again to rejoin"
                )
            write_atomic(CLUSTER_ID_FILE, reply["cluster_id"])
            write_atomic(
                SERVER_DIR / "token", f"K10{reply['cluster_id']}::server:{self.config['_token_sha256']}\n"
            )
            self.write_kubeconfig()

    def initialise(self) -> None:
        self.state.initialise()
        RESET_FLAG.unlink(missing_ok=True)
        self.state.register(self.describe())
        token_line = f"K10{self.state.data['cluster_id']}::server:{self.config['_token_sha256']}\n"
        write_atomic(SERVER_DIR / "token", token_line)
        write_atomic(SERVER_DIR / "node-token", token_line)
        self.write_kubeconfig()

    def write_kubeconfig(self) -> None:
        """Every server writes an admin kubeconfig for its own API, as k3s does."""
        mode = int(str(self.config.get("write-kubeconfig-mode", "0600")), 8)
        write_atomic(KUBECONFIG, kubeconfig_text(self.config["_token_sha256"]), mode)

    def leave(self, *_args) -> None:
        with contextlib.suppress(OSError, Refused):
            if self.first:
                self.state.set_ready(self.name, False)
            else:
                request(
                    self.config["server"],
                    {"op": "leave", "token_sha256": self.config["_token_sha256"], "name": self.name},
                    3,
                )
        sys.exit(0)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.leave)
        if self.first:
            self.listen()
            self.initialise()
        else:
            self.join()
            self.listen()
        sd_notify("READY=1")
        print(f"fake_k3s_release {FAKE_K3S_VERSION}: {self.mode} {self.name} is up", flush=True)
        while True:
            time.sleep(HEARTBEAT_S)
            if not self.first:  # nodes keep reporting to the cluster, and so reappear after a restore
                with contextlib.suppress(OSError, Refused, ValueError):
                    request(
                        self.config["server"],
                        {"op": "join", "token_sha256": self.config["_token_sha256"], "node": self.describe()},
                        3,
                    )


def kubeconfig_text(token_sha256: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- cluster:\n    certificate-authority-data: ZmFrZQ==\n"
        f"    server: https://127.0.0.1:{API_PORT}\n  name: default\n"
        "contexts:\n- context:\n    cluster: default\n    user: default\n  name: default\n"
        "current-context: default\n"
        f"users:\n- name: default\n  user:\n    token: fake-{token_sha256}\n"
    )


def cluster_request(message: dict) -> dict:
    if not KUBECONFIG.exists():
        raise Refused(
            "The connection to the server localhost:8080 was refused - did you specify the right host or port?"
        )
    token = KUBECONFIG.read_text().split("token: fake-", 1)[1].split()[0]
    return request("127.0.0.1", {**message, "token_sha256": token})


def cmd_kubectl(args: list[str]) -> int:
    reply = cluster_request({"op": "kubectl", "args": args})
    if not reply.get("ok"):
        raise Refused(reply.get("error", "request failed"))
    sys.stdout.write(reply["stdout"])
    sys.stderr.write(reply["stderr"])
    return reply["rc"]


def snapshot_dir(args: list[str]) -> pathlib.Path:
    for arg in args:
        if arg.startswith("--etcd-snapshot-dir="):
            return pathlib.Path(arg.split("=", 1)[1])
    config = load_config("server", SERVER_KEYS)
    return pathlib.Path(config.get("etcd-snapshot-dir") or DEFAULT_SNAPSHOT_DIR)


def option(args: list[str], name: str, default: str) -> str:
    for index, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and index + 1 < len(args):
            return args[index + 1]
    return default


def cmd_etcd_snapshot(args: list[str]) -> int:
    if not CLUSTER_ID_FILE.exists():
        raise Refused("etcd-snapshot runs on servers with embedded etcd only")
    directory = snapshot_dir(args)
    action = args[0] if args and not args[0].startswith("-") else "save"
    if action == "save":
        name = option(args, "name", "on-demand")
        reply = cluster_request({"op": "snapshot"})
        if not reply.get("ok"):
            raise Refused(reply.get("error", "snapshot failed"))
        snapshot = f"{name}-{socket.gethostname().lower()}-{int(time.time())}"
        write_atomic(
            directory / snapshot, json.dumps({"fake_k3s_release": FAKE_K3S_VERSION, "state": reply["state"]})
        )
        print(f"Snapshot {snapshot} saved.")
        return 0
    snapshots = sorted(directory.glob("*")) if directory.exists() else []
    if action in ("ls", "list"):
        print("Name Location Size Created")
        for path in snapshots:
            print(f"{path.name} file://{path} {path.stat().st_size} {int(path.stat().st_mtime)}")
        return 0
    if action == "prune":
        keep = int(option(args, "snapshot-retention", "5"))
        name = option(args, "name", "on-demand")
        matching = [p for p in snapshots if p.name.startswith(f"{name}-")]
        for path in matching[: max(0, len(matching) - keep)]:
            path.unlink()
            print(f"Removing local snapshot {path}")
        return 0
    if action == "delete":
        for name in [a for a in args[1:] if not a.startswith("-")]:
            (directory / name).unlink()
            print(f"Snapshot {name} deleted.")
        return 0
    raise Refused(f"etcd-snapshot {action}: not part of the test double")


def cmd_cluster_reset(args: list[str]) -> int:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", API_PORT)) == 0:
            raise Refused("k3s is running on this node: stop it before --cluster-reset")
    if not CLUSTER_ID_FILE.exists():
        raise Refused(f"no etcd data in {DB_DIR} to reset")
    restore = option(args, "cluster-reset-restore-path", "")
    state = json.loads(STATE_FILE.read_text())
    if restore:
        path = pathlib.Path(restore)
        if not path.exists():
            raise Refused(f"etcd snapshot {restore} does not exist")
        state = json.loads(path.read_text())["state"]
    for member in state["members"].values():
        member["ready"] = False
    state["cluster_id"] = secrets.token_hex(8)  # a reset starts a new etcd cluster
    write_atomic(STATE_FILE, json.dumps(state, indent=1, sort_keys=True))
    write_atomic(CLUSTER_ID_FILE, state["cluster_id"])
    write_atomic(RESET_FLAG, restore or "reset")
    print(
        "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. "
        f"Backup and delete ${{datadir}}/server/db on each peer etcd server and rejoin the nodes{' (restored ' + restore + ')' if restore else ''}"
    )
    return 0


def main(argv: list[str]) -> int:
    log_call(argv)
    if not argv or argv[0] in ("--version", "-v", "version"):
        print(f"k3s version {FAKE_K3S_VERSION} (fake_k3s_release)\ngo version go1.24 (test double)")
        return 0
    command, args = argv[0], argv[1:]
    try:
        if command == "kubectl":
            return cmd_kubectl(args)
        if command == "etcd-snapshot":
            return cmd_etcd_snapshot(args)
        if command == "server" and "--cluster-reset" in args:
            return cmd_cluster_reset(args)
        if command in ("server", "agent"):
            Node(command, load_config(command, SERVER_KEYS if command == "server" else AGENT_KEYS)).run()
        raise Refused(f"'{command}' is not part of the test double")
    except Refused as error:
        print(f'level=fatal msg="{error}"', file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
