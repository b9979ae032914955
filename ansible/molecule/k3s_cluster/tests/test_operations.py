"""What the day-2 playbooks did (side_effect.yml): rolling upgrade twice, etcd snapshot, restore.

The call log of the test double (/var/log/fake-k3s/calls.jsonl on every node) records each k3s
invocation with its time, so the order of drains, restarts and resets across nodes is checked here.
"""

import functools
import hashlib
import json
import pathlib

from conftest import inventory_host, inventory_hosts

SERVERS = inventory_hosts("k3s_servers")
AGENTS = inventory_hosts("k3s_agents")
FIRST = SERVERS[0]
testinfra_hosts = [FIRST]


@functools.cache
def calls(name: str) -> list[dict]:
    text = inventory_host(name).file("/var/log/fake-k3s/calls.jsonl").content_string
    return [{**json.loads(line), "node": name} for line in text.splitlines()]


@functools.cache
def cluster_calls() -> list[dict]:
    return sorted((call for name in SERVERS + AGENTS for call in calls(name)), key=lambda call: call["t"])


def test_rolling_upgrade_drains_and_uncordons_one_node_at_a_time_servers_first():
    sequence = [
        (call["argv"][1], call["argv"][2])
        for call in cluster_calls()
        if call["argv"][:1] == ["kubectl"] and call["argv"][1:2] in (["drain"], ["uncordon"])
    ]
    expected = [(verb, node) for node in SERVERS + AGENTS for verb in ("drain", "uncordon")]
    assert sequence == expected, (
        "each node once, drained then uncordoned before the next; the re-run drained nothing"
    )


def test_each_node_restarted_on_the_new_release_between_its_drain_and_uncordon(scenario_vars):
    target = scenario_vars("k3s_upgrade_version")["k3s_upgrade_version"]
    for node in SERVERS + AGENTS:
        log = cluster_calls()
        drain = next(c["t"] for c in log if c["argv"][:3] == ["kubectl", "drain", node])
        uncordon = next(c["t"] for c in log if c["argv"][:3] == ["kubectl", "uncordon", node])
        starts = [
            c["t"] for c in calls(node) if c["argv"] in (["server"], ["agent"]) and drain < c["t"] < uncordon
        ]
        assert len(starts) == 1, f"{node}: {len(starts)} starts between its drain and uncordon"
        version = inventory_host(node).check_output("/usr/local/bin/k3s --version")
        assert target in version, f"{node} runs {version}"


def test_snapshot_is_kept_on_the_server_and_copied_to_the_controller(scenario_vars):
    artifacts = pathlib.Path(scenario_vars("molecule_artifacts")["molecule_artifacts"])
    fetched = sorted((artifacts / "snapshots").glob("molecule-server1-*"))
    assert len(fetched) == 1, f"expected one fetched snapshot, found {fetched}"
    on_server = inventory_host(FIRST).file(f"/var/lib/rancher/k3s/server/db/snapshots/{fetched[0].name}")
    assert on_server.exists and on_server.sha256sum == hashlib.sha256(fetched[0].read_bytes()).hexdigest()


def test_restore_resets_the_first_server_from_the_snapshot_while_all_servers_are_stopped():
    log = cluster_calls()
    resets = [c for c in log if c["argv"][:2] == ["server", "--cluster-reset"]]
    assert [c["node"] for c in resets] == [FIRST]
    assert resets[0]["argv"][2].startswith(
        "--cluster-reset-restore-path=/var/lib/rancher/k3s/server/db/snapshots/molecule-"
    )
    for node in SERVERS:
        restarts = [c["t"] for c in calls(node) if c["argv"] == ["server"] and c["t"] > resets[0]["t"]]
        assert restarts, f"{node} was not started again after the reset"
        if node != FIRST:
            assert min(restarts) > max(c["t"] for c in calls(FIRST) if c["argv"] == ["server"]), (
                f"{node} rejoined before the first server"
            )


def test_other_servers_kept_their_old_etcd_data_aside_and_rejoined():
    for node in SERVERS[1:]:
        server = inventory_host(node)
        backups = server.check_output(
            "ls -d /var/lib/rancher/k3s/server/db.pre-restore-* 2>/dev/null || true"
        ).split()
        assert len(backups) == 1, f"{node}: {backups}"
        assert (
            server.file("/var/lib/rancher/k3s/server/db/etcd/cluster-id").content_string
            == inventory_host(FIRST).file("/var/lib/rancher/k3s/server/db/etcd/cluster-id").content_string
        ), f"{node} did not rejoin the restored cluster"
