"""The k3s ports are open between the nodes, through the firewalld services the roles defined, and
nothing else is: each probe crosses the container network and the target's firewalld."""

import pytest
from conftest import inventory_host, inventory_hosts, probe_ports

testinfra_hosts = inventory_hosts("all")
SERVERS = inventory_hosts("k3s_servers")
ALL = inventory_hosts("all")


def test_every_node_reaches_the_api_of_every_server(host):
    failed = probe_ports(host, [(server, 6443) for server in SERVERS])
    assert not failed, f"from {host.backend.get_hostname()}: {failed}"


def test_servers_reach_each_others_etcd(host):
    if host.backend.get_hostname() not in SERVERS:
        pytest.skip("etcd is reached by servers only")
    failed = probe_ports(host, [(server, port) for server in SERVERS for port in (2379, 2380)])
    assert not failed, f"from {host.backend.get_hostname()}: {failed}"


def test_every_node_reaches_every_kubelet(host):
    failed = probe_ports(host, [(node, 10250) for node in ALL])
    assert not failed, f"from {host.backend.get_hostname()}: {failed}"


def test_a_port_no_service_opened_stays_closed(host):
    target = SERVERS[0]
    if host.backend.get_hostname() == target:
        pytest.skip("probed from the other nodes")
    listener = inventory_host(target)
    unit = f"firewall-probe-{host.backend.get_hostname()}"
    listener.run_expect([0], f"systemd-run --unit={unit} python3 -m http.server 18080")
    try:
        started = listener.run(
            "for i in $(seq 20); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 18080), 1)' && exit 0; sleep 0.5; done; exit 1"
        )
        assert started.rc == 0, "the probe listener did not start"
        assert probe_ports(host, [(target, 18080)]), (
            f"{host.backend.get_hostname()} reached {target}:18080, which no firewalld service opens"
        )
    finally:
        listener.run(f"systemctl stop {unit}")


def test_the_pod_and_service_networks_are_trusted(host):
    sources = host.check_output("firewall-cmd --zone=k3s-networks --list-sources").split()
    assert sources == ["10.42.0.0/16", "10.43.0.0/16"]
    services = host.check_output("firewall-cmd --list-services").split()
    expected = {"k3s-node", "k3s-server"} if host.backend.get_hostname() in SERVERS else {"k3s-node"}
    assert expected <= set(services) and ("k3s-server" in services) == ("k3s-server" in expected), services
