"""fake_kafka_release: a TEST DOUBLE of Apache Kafka's bin/ scripts (KRaft mode), for molecule scenarios.

It stands in for the Kafka release tarball, which cannot be downloaded on the build machine. The
release's bin/*.sh scripts call this program; it implements only what the kafka role and its unit use,
with Kafka's semantics where the role depends on them:

- `kafka-storage.sh random-uuid` prints a new cluster id (22 base64url characters).
- `kafka-storage.sh format --config F --cluster-id ID [--ignore-formatted] [--add-scram M=[name=,password=]]`
  writes meta.properties (cluster.id, node.id, directory.id) into every log dir of F; a formatted
  directory is never touched: without --ignore-formatted the command fails, with it that directory is skipped.
- `kafka-server-start.sh F` refuses log dirs without meta.properties or formatted for another node or
  cluster, then listens on every port of `listeners` (JAVA_HOME must hold bin/java). The nodes of
  `controller.quorum.voters` share the topic metadata over the controller port, and a restarted node
  reports itself caught up only FAKE_CATCH_UP_S seconds after it started, so its partitions are
  under-replicated meanwhile (what the rolling restart waits out).
- `kafka-topics.sh --bootstrap-server B --command-config F (--list | --describe
  [--under-replicated-partitions] [--topic T] | --create --topic T --partitions N --replication-factor R
  [--config k=v]... | --alter --topic T --partitions N)` and `kafka-configs.sh --bootstrap-server B
  --command-config F --alter --entity-type topics --entity-name T --add-config k=v[,k=v]`, with the output
  formats of Kafka 4 for the lines the role parses.

Not implemented: producing, consuming, TLS and SASL handshakes (the admin config file is read only for
security.protocol), brokers that are not also controllers. The ports speak the JSON-lines protocol of
fake_service_runtime, not the Kafka protocol.
"""

from __future__ import annotations  # the EL 9 test images run Python 3.9

import base64
import contextlib
import json
import os
import pathlib
import re
import sys
import threading
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fake_service_runtime import (  # shipped next to this file in the tarball
    Refused,
    call,
    host_port,
    read_properties,
    require_java,
    run_main,
    serve_json_lines,
    write_atomic,
)

FAKE_CATCH_UP_S = 2.0
METADATA_VERSION = "4.1-IV1"
METADATA_FILE = "__cluster_metadata-0/fake-topics.json"
SCRAM_USER = re.compile(r"SCRAM-SHA-(256|512)=\[name=[^,\]]+,password=[^,\]]+\]")


def random_uuid() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def node_config(path: str) -> dict[str, str]:
    config = read_properties(pathlib.Path(path))
    for key in ("process.roles", "node.id", "controller.quorum.voters", "listeners"):
        if not config.get(key):
            raise Refused(f"{path}: {key} is required in KRaft mode")
    if not (config.get("log.dirs") or config.get("log.dir")):
        raise Refused(f"{path}: log.dirs is required")
    return config


def log_dirs(config: dict[str, str]) -> list[pathlib.Path]:
    return [pathlib.Path(item.strip()) for item in (config.get("log.dirs") or config["log.dir"]).split(",")]


def voters(config: dict[str, str]) -> dict[int, tuple[str, int]]:
    """controller.quorum.voters "1@host:9093,..." -> {1: (host, 9093)}."""
    parsed = {}
    for voter in config["controller.quorum.voters"].split(","):
        match = re.fullmatch(r"(\d+)@(.+):(\d+)", voter.strip())
        if not match:
            raise Refused(f"controller.quorum.voters has {voter!r}; expected <id>@<host>:<port>")
        parsed[int(match.group(1))] = (match.group(2), int(match.group(3)))
    return parsed


def storage(args: list[str]) -> int:
    if args[:1] == ["random-uuid"]:
        print(random_uuid())
        return 0
    if args[:1] != ["format"]:
        raise Refused("usage: kafka-storage.sh {random-uuid,format,info} ...")
    options = parse_options(
        args[1:], flags=frozenset({"--ignore-formatted", "-g"}), repeated=frozenset({"--add-scram", "-S"})
    )
    config = node_config(options.get("--config") or options.get("-c") or "")
    cluster_id = options.get("--cluster-id") or options.get("-t") or ""
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id):
        raise Refused(f"Cluster ID string {cluster_id!r} does not appear to be a valid UUID")
    users = options.get("--add-scram", []) + options.get("-S", [])
    malformed = [user for user in users if not SCRAM_USER.fullmatch(user)]
    if malformed:
        raise Refused(
            f"--add-scram takes MECHANISM=[name=NAME,password=PASSWORD], not {malformed[0].split(',')[0]}..."
        )
    ignore_formatted = "--ignore-formatted" in options or "-g" in options
    formatted = [directory for directory in log_dirs(config) if (directory / "meta.properties").exists()]
    if formatted and not ignore_formatted:
        raise Refused(
            f"Log directory {formatted[0]} is already formatted. Use --ignore-formatted to ignore this "
            "directory and format the others."
        )
    for directory in log_dirs(config):
        if directory in formatted:
            print(f"{directory} is already formatted: skipping it.")
            continue
        print(f"Formatting metadata directory {directory} with metadata.version {METADATA_VERSION}.")
        meta = (
            f"#\n#{time.ctime()}\nnode.id={config['node.id']}\ndirectory.id={random_uuid()}\n"
            f"version=1\ncluster.id={cluster_id}\n"
        )
        write_atomic(directory / "meta.properties", meta)
        if users:
            write_atomic(directory / "__cluster_metadata-0" / "fake-scram-users", f"{len(users)}\n", 0o600)
    return 0


def parse_options(
    args: list[str], flags: frozenset[str] = frozenset(), repeated: frozenset[str] = frozenset()
) -> dict:
    """--name value pairs (a list for the names in `repeated`) and --flag flags -> {name: value or True}."""
    options: dict = {}
    index = 0
    while index < len(args):
        name = args[index]
        if not name.startswith("-"):
            raise Refused(f"unrecognized argument {name!r}")
        if name in flags:
            options[name] = True
            index += 1
            continue
        if index + 1 >= len(args):
            raise Refused(f"option {name} needs a value")
        value = args[index + 1]
        if name in repeated:
            options.setdefault(name, []).append(value)
        else:
            options[name] = value
        index += 2
    return options


# --- the node -----------------------------------------------------------------------------------------


class Node:
    """One combined KRaft node: its topic metadata (kept in the first log dir, shared with the voters)."""

    def __init__(self, config: dict[str, str]) -> None:
        self.config = config
        self.node_id = int(config["node.id"])
        self.voters = voters(config)
        self.started = time.time()
        self.metadata_file = log_dirs(config)[0] / METADATA_FILE
        self.lock = threading.Lock()
        self.metadata = (
            json.loads(self.metadata_file.read_text())
            if self.metadata_file.exists()
            else {"epoch": 0, "topics": {}}
        )

    def save(self) -> None:
        write_atomic(self.metadata_file, json.dumps(self.metadata, sort_keys=True), 0o600)

    def catch_up(self) -> None:
        """Take the newest metadata any reachable voter has (a restarted node replays the quorum's log)."""
        for node_id, address in self.voters.items():
            if node_id == self.node_id:
                continue
            try:
                theirs = call(*address, {"op": "metadata"}, timeout=2)["metadata"]
            except Refused:
                continue
            with self.lock:
                if theirs["epoch"] > self.metadata["epoch"]:
                    self.metadata = theirs
                    self.save()

    def caught_up(self) -> bool:
        return time.time() - self.started >= FAKE_CATCH_UP_S

    def in_sync_replicas(self) -> set[int]:
        in_sync = {self.node_id} if self.caught_up() else set()
        for node_id, address in self.voters.items():
            if node_id != self.node_id:
                try:
                    if call(*address, {"op": "status"}, timeout=2)["caught_up"]:
                        in_sync.add(node_id)
                except Refused:
                    pass
        return in_sync

    def controller_answer(self, request: dict) -> dict:
        if request["op"] == "status":
            return {"node_id": self.node_id, "caught_up": self.caught_up()}
        if request["op"] == "metadata":
            with self.lock:
                return {"metadata": self.metadata}
        if request["op"] == "replicate":
            with self.lock:
                if request["metadata"]["epoch"] > self.metadata["epoch"]:
                    self.metadata = request["metadata"]
                    self.save()
            return {"ok": True}
        raise Refused(f"unknown controller request {request['op']!r}")

    def broker_answer(self, request: dict) -> dict:
        op = request["op"]
        if op == "describe":
            in_sync = self.in_sync_replicas()
            with self.lock:
                topics = self.metadata["topics"]
                return {
                    "topics": {name: topics[name] for name in sorted(topics)},
                    "in_sync": sorted(in_sync),
                    "brokers": sorted(self.voters),
                }
        with self.lock:
            topics = self.metadata["topics"]
            name = request["topic"]
            if op == "create":
                if name in topics:
                    raise Refused(f"Topic '{name}' already exists.")
                factor = int(request["replication_factor"])
                if factor > len(self.voters):
                    raise Refused(
                        f"org.apache.kafka.common.errors.InvalidReplicationFactorException: Replication factor: "
                        f"{factor} larger than available brokers: {len(self.voters)}."
                    )
                topics[name] = {
                    "id": random_uuid(),
                    "partitions": int(request["partitions"]),
                    "replication_factor": factor,
                    "config": dict(request.get("config", {})),
                }
            elif name not in topics:
                raise Refused(f"Topic '{name}' does not exist as expected")
            elif op == "partitions":
                if int(request["partitions"]) <= topics[name]["partitions"]:
                    raise Refused(
                        f"org.apache.kafka.common.errors.InvalidPartitionsException: Topic currently has "
                        f"{topics[name]['partitions']} partitions, which is higher than the requested {request['partitions']}."
                    )
                topics[name]["partitions"] = int(request["partitions"])
            elif op == "configure":
                topics[name]["config"].update(request["config"])
            else:
                raise Refused(f"unknown admin request {op!r}")
            self.metadata["epoch"] += 1
            self.save()
            snapshot = json.loads(json.dumps(self.metadata))
        for node_id, address in self.voters.items():
            if node_id != self.node_id:
                with contextlib.suppress(Refused):  # a node that is down catches up when it starts
                    call(*address, {"op": "replicate", "metadata": snapshot}, timeout=2)
        return {"ok": True}


def server_start(args: list[str]) -> int:
    if len(args) != 1:
        raise Refused("USAGE: kafka-server-start.sh [-daemon] server.properties [--override property=value]*")
    require_java(os.environ.get("JAVA_HOME"))
    config = node_config(args[0])
    metas = {}
    for directory in log_dirs(config):
        meta_file = directory / "meta.properties"
        if not meta_file.exists():
            raise Refused(
                f"No readable meta.properties files found in {directory}. Format the storage first (kafka-storage.sh format)."
            )
        metas[directory] = read_properties(meta_file)
    cluster_ids = {meta.get("cluster.id") for meta in metas.values()}
    if len(cluster_ids) != 1:
        raise Refused(f"Invalid cluster.id in the log directories: {sorted(map(str, cluster_ids))}")
    for directory, meta in metas.items():
        if meta.get("node.id") != config["node.id"]:
            raise Refused(
                f"Stored node id {meta.get('node.id')} doesn't match previous node id {config['node.id']} in {directory}"
            )
    node = Node(config)
    roles = set(config["process.roles"].split(","))
    names = dict(
        item.split(":", 1)
        for item in config.get("listener.security.protocol.map", "").split(",")
        if ":" in item
    )
    controller_names = set(config.get("controller.listener.names", "CONTROLLER").split(","))
    for listener in config["listeners"].split(","):
        name, _, address = listener.partition("://")
        _, port = host_port(address, 9092)
        if name in controller_names:
            serve_json_lines(port, node.controller_answer)
        else:
            serve_json_lines(port, node.broker_answer)
        print(f"Listening on {name}://{address} ({names.get(name, name)})", flush=True)
    node.catch_up()
    print(
        f"[KafkaRaftServer nodeId={node.node_id}] Kafka Server started ({'+'.join(sorted(roles))}, "
        f"cluster {cluster_ids.pop()})",
        flush=True,
    )
    while True:
        time.sleep(3600)


# --- admin commands -----------------------------------------------------------------------------------


def admin_target(options: dict) -> tuple[str, int]:
    if "--bootstrap-server" not in options:
        raise Refused('Missing required argument "[bootstrap-server]"')
    command_config = options.get("--command-config")
    if command_config:
        protocol = read_properties(pathlib.Path(command_config)).get("security.protocol", "PLAINTEXT")
        if protocol not in ("PLAINTEXT", "SASL_PLAINTEXT"):
            raise Refused(f"the fake Kafka admin client speaks no TLS (security.protocol={protocol})")
    require_java(os.environ.get("JAVA_HOME"))
    return host_port(options["--bootstrap-server"].split(",")[0], 9092)


def topics_command(args: list[str]) -> int:
    actions = {"--list", "--describe", "--create", "--alter"} & set(args)
    if len(actions) != 1:
        raise Refused(
            "Command must include exactly one action: --list, --describe, --create, --alter or --delete"
        )
    options = parse_options(
        [arg for arg in args if arg not in actions],
        flags=frozenset({"--under-replicated-partitions"}),
        repeated=frozenset({"--config"}),
    )
    broker = admin_target(options)
    action = actions.pop()
    topic = options.get("--topic")
    if action == "--create":
        configs = dict(item.split("=", 1) for item in options.get("--config", []))
        call(
            *broker,
            {
                "op": "create",
                "topic": topic,
                "partitions": options["--partitions"],
                "replication_factor": options["--replication-factor"],
                "config": configs,
            },
        )
        print(f"Created topic {topic}.")
        return 0
    if action == "--alter":
        call(*broker, {"op": "partitions", "topic": topic, "partitions": options["--partitions"]})
        return 0
    reply = call(*broker, {"op": "describe"})
    topics = reply["topics"]
    if topic is not None:
        if topic not in topics:
            raise Refused(f"Topic '{topic}' does not exist as expected")
        topics = {topic: topics[topic]}
    if action == "--list":
        print("\n".join(topics))
        return 0
    in_sync, brokers = set(reply["in_sync"]), reply["brokers"]
    under_only = "--under-replicated-partitions" in options
    for name, described in topics.items():
        if not under_only:
            configs = ",".join(f"{key}={value}" for key, value in sorted(described["config"].items()))
            print(
                f"Topic: {name}\tTopicId: {described['id']}\tPartitionCount: {described['partitions']}\t"
                f"ReplicationFactor: {described['replication_factor']}\tConfigs: {configs}"
            )
        for partition in range(described["partitions"]):
            replicas = [
                brokers[(partition + offset) % len(brokers)]
                for offset in range(described["replication_factor"])
            ]
            isr = [replica for replica in replicas if replica in in_sync]
            if under_only and len(isr) == len(replicas):
                continue
            print(
                f"\tTopic: {name}\tPartition: {partition}\tLeader: {isr[0] if isr else 'none'}\t"
                f"Replicas: {','.join(map(str, replicas))}\tIsr: {','.join(map(str, isr))}\tElr: \tLastKnownElr: "
            )
    return 0


def configs_command(args: list[str]) -> int:
    if "--alter" not in args:
        raise Refused("Command must include exactly one action: --describe, --alter")
    options = parse_options([arg for arg in args if arg != "--alter"])
    broker = admin_target(options)
    if options.get("--entity-type") != "topics":
        raise Refused("the fake kafka-configs.sh alters topics only (--entity-type topics)")
    pairs = dict(item.split("=", 1) for item in options.get("--add-config", "").split(",") if item)
    call(*broker, {"op": "configure", "topic": options.get("--entity-name"), "config": pairs})
    print(f"Completed updating config for topic {options.get('--entity-name')}.")
    return 0


COMMANDS = {
    "kafka-storage.sh": storage,
    "kafka-server-start.sh": server_start,
    "kafka-topics.sh": topics_command,
    "kafka-configs.sh": configs_command,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        raise Refused(f"fake_kafka_release: the bin/ scripts of this test double are {', '.join(COMMANDS)}")
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    run_main(main)
