"""Node-level specs: subnets, security group rules, the data volume script, GPU sharing config."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

from infra.specs import cloud_init, data, gpu, network

SHELLCHECK = pathlib.Path(sys.executable).parent / "shellcheck"


def test_each_availability_zone_gets_its_own_slash_24():
    assert network.subnet_cidrs("10.20.0.0/16", ["a", "b", "c"]) == {
        "a": "10.20.0.0/24",
        "b": "10.20.1.0/24",
        "c": "10.20.2.0/24",
    }


def test_only_ssh_and_the_api_are_reachable_from_admin_networks():
    rules = network.ingress_rules(["198.51.100.0/24"])
    external = {(r.from_port, r.to_port, r.cidr) for r in rules if r.cidr is not None}
    assert external == {(22, 22, "198.51.100.0/24"), (6443, 6443, "198.51.100.0/24")}
    assert all(r.cidr is None for r in rules if r.from_port not in (22, 6443))


def test_egress_to_the_internet_is_http_and_https_only():
    internet = {(r.protocol, r.from_port) for r in network.egress_rules() if r.cidr == network.ANYWHERE}
    assert internet == {("tcp", 443), ("tcp", 80)}


def test_rule_names_are_unique_because_pulumi_names_resources_after_them():
    names = [r.name for r in network.ingress_rules(["198.51.100.0/24", "203.0.113.0/24"])]
    assert len(names) == len(set(names))


def test_the_data_volume_script_finds_the_volume_by_its_serial_and_is_shellcheck_clean(tmp_path):
    script = cloud_init.data_volume_script("vol-0123456789abcdef0")
    assert "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0" in script
    assert "mkfs.xfs" in script and "/data/hdfs /data/kafka" in script
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    result = subprocess.run([SHELLCHECK, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_data_volume_script_rejects_anything_but_a_volume_id():
    with pytest.raises(ValueError, match="is not an EBS volume id"):
        cloud_init.data_volume_script("vol-1; rm -rf /")


def test_data_directories_follow_the_groups():
    assert cloud_init.data_directories(("k3s_agents", "hdfs_datanodes")) == {
        "hdfs_datanode_data_dirs": ["/data/hdfs"]
    }
    assert cloud_init.data_directories(("k3s_agents",)) == {}


def test_time_slicing_advertises_each_gpu_several_times():
    config = yaml.safe_load(gpu.device_plugin_config("time-slicing", 4, "none"))
    assert config["version"] == "v1"
    assert config["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert config["flags"]["migStrategy"] == "none"


def test_mig_without_sharing_sets_only_the_mig_strategy():
    config = yaml.safe_load(gpu.device_plugin_config("none", 1, "mixed"))
    assert config["flags"]["migStrategy"] == "mixed" and "sharing" not in config
    with pytest.raises(ValueError, match="at least 2 replicas"):
        gpu.device_plugin_config("time-slicing", 1, "none")


def test_the_device_plugin_restarts_when_its_config_changes():
    one = gpu.device_plugin(gpu.device_plugin_config("none", 1, "none"))[1]
    two = gpu.device_plugin(gpu.device_plugin_config("time-slicing", 2, "none"))[1]
    key = "mlstack.io/config-sha256"
    assert (
        one["spec"]["template"]["metadata"]["annotations"][key]
        != two["spec"]["template"]["metadata"]["annotations"][key]
    )


def test_node_services_get_stable_names_backed_by_node_addresses():
    service, endpoints = data.external_service(data.HDFS_NAMENODE, ["10.20.0.5"])
    assert service["spec"].get("selector") is None, "no selector: the EndpointSlice names the nodes"
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == data.HDFS_NAMENODE
    assert endpoints["endpoints"] == [{"addresses": ["10.20.0.5"], "conditions": {"ready": True}}]
    assert (
        {p["port"] for p in endpoints["ports"]}
        == {p["port"] for p in service["spec"]["ports"]}
        == {8020, 9870}
    )
