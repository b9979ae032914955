"""Bad input stops playbooks/site.yml in preflight, with a message saying what to fix, before the host
changes; and check mode on a fresh host reports what it would do and changes nothing.

Each case writes its own inventory for the scenario's fresh container and runs ansible-playbook, as a
user would. "Nothing changed" means: no file or link outside the volatile directories has a ctime newer than a
marker touched just before the run (ctime cannot be set back, unlike mtime).
"""

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ANSIBLE_DIR, inventory_host, inventory_hosts

FRESH = inventory_hosts("all")[0]
testinfra_hosts = [FRESH]
SITE = ANSIBLE_DIR / "playbooks" / "site.yml"
MARKER = "/run/preflight-marker"
# Not the host's state: kernel and runtime file systems, scratch space, the journal, Ansible's own
# temporary files, and apt's binary caches and planner log, which any apt simulation (check mode) rewrites.
VOLATILE = [
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/root/.ansible",
    "/var/log/journal",
    "/var/cache/apt",
    "/var/log/apt",
]


@pytest.fixture(scope="module")
def fresh():
    return inventory_host(FRESH)


@pytest.fixture(scope="module")
def settings_of_scenario(scenario_vars) -> dict:
    return scenario_vars(
        "molecule_artifacts", "k3s_version", container=f"hostvars['{FRESH}']['ansible_host']"
    )


@pytest.fixture
def valid_vars(settings_of_scenario) -> dict:
    """Variables of a valid single-server inventory (the fake release, an encrypted token store)."""
    artifacts = pathlib.Path(settings_of_scenario["molecule_artifacts"])
    return {
        "k3s_version": settings_of_scenario["k3s_version"],
        "k3s_install_source": "airgap",
        "k3s_airgap_dir": str(artifacts / "fake_k3s_release" / settings_of_scenario["k3s_version"]),
        "k3s_token_vault_password_file": str(artifacts / "vault-password"),
        "k3s_service_limit_nofile": 16384,
        "k3s_join_probe_timeout": 2,
        # EL in CI: k3s-selinux from Rancher's repository (the fake release carries no RPM).
        "k3s_selinux_source": os.environ.get("MOLECULE_K3S_SELINUX_SOURCE", "airgap"),
    }


def host_entry(settings_of_scenario: dict, **variables) -> dict:
    return {
        "ansible_connection": "community.docker.docker",
        "ansible_host": settings_of_scenario["container"],
        **variables,
    }


class SiteRun:
    """One ansible-playbook run of site.yml, read through the json callback."""

    def __init__(self, tmp_path: pathlib.Path, inventory: dict, *args: str) -> None:
        path = tmp_path / "inventory.yml"
        path.write_text(yaml.safe_dump(inventory))
        command = [
            str(pathlib.Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(path),
            str(SITE),
            *args,
        ]
        env = {
            **os.environ,
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        }
        process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
        self.returncode = process.returncode
        self.stderr = process.stderr
        # The JSON document, then whatever other callbacks print after it (the timer, role profiles).
        start = process.stdout.find("{")
        self.document = json.JSONDecoder().raw_decode(process.stdout[start:])[0] if start >= 0 else {}

    def results(self):
        for play in self.document.get("plays", []):
            for task in play["tasks"]:
                for result in task["hosts"].values():
                    yield from [result, *result.get("results", [])]

    def messages(self, *, failed: bool) -> list[str]:
        return [
            str(result["msg"])
            for result in self.results()
            if "msg" in result and bool(result.get("failed")) == failed and not result.get("skipped")
        ]

    def describe(self) -> str:
        return f"rc={self.returncode}\nfailures: {self.messages(failed=True)}\nstderr: {self.stderr[-2000:]}"


@contextlib.contextmanager
def host_unchanged(host):
    """Fails when any file of the host outside VOLATILE changed (ctime) inside the block."""
    host.run_expect([0], f"touch {MARKER}")
    yield
    prune = " -o ".join(f"-path {path}" for path in VOLATILE)
    changed = host.check_output(
        f"find / -xdev \\( {prune} \\) -prune -o ! -type d -cnewer {MARKER} -print"
    ).split()
    assert not changed, f"the run changed {len(changed)} files, e.g. {changed[:10]}"


def single_server(settings_of_scenario: dict, valid_vars: dict, **overrides) -> dict:
    return {
        "all": {
            "vars": {**valid_vars, **overrides},
            "children": {"k3s_servers": {"hosts": {FRESH: host_entry(settings_of_scenario)}}},
        }
    }


def assert_stopped_with(run: SiteRun, *fragments: str) -> None:
    """The run failed, and one failure message holds every fragment."""
    assert run.returncode != 0, f"the run succeeded: {run.describe()}"
    matching = [message for message in run.messages(failed=True) if all(f in message for f in fragments)]
    assert matching, f"no failure message with {fragments}: {run.describe()}"


def test_an_even_number_of_servers_is_refused(fresh, tmp_path, settings_of_scenario, valid_vars):
    inventory = single_server(settings_of_scenario, valid_vars)
    inventory["all"]["children"]["k3s_servers"]["hosts"]["twin"] = host_entry(settings_of_scenario)
    with host_unchanged(fresh):
        result = SiteRun(tmp_path, inventory)
    assert_stopped_with(result, "k3s_servers has 2 hosts", "needs an odd number (1, 3 or 5)")


def test_joining_without_a_reachable_first_server_is_refused(
    fresh, tmp_path, settings_of_scenario, valid_vars
):
    inventory = {
        "all": {
            "vars": valid_vars,
            "children": {
                # TEST-NET-1: nothing answers there.
                "k3s_servers": {
                    "hosts": {"ghost": {"ansible_host": "192.0.2.10", "k3s_node_ip": "192.0.2.10"}}
                },
                "k3s_agents": {"hosts": {FRESH: host_entry(settings_of_scenario)}},
            },
        }
    }
    with host_unchanged(fresh):
        result = SiteRun(tmp_path, inventory, "--limit", FRESH)
    assert_stopped_with(
        result, "joins the cluster at https://192.0.2.10:6443, but nothing answered", "Start k3s on ghost"
    )


# Files that tell Ansible the distribution and release, and how to make them say an older release.
RELEASE_FILES = "/etc/os-release /etc/debian_version /etc/redhat-release /etc/system-release /etc/almalinux-release /etc/rocky-release"
MAKE_OLD = {
    "debian": "sed -i 's/^VERSION_ID=.*/VERSION_ID=\"11\"/' /etc/os-release && echo 11.9 > /etc/debian_version",
    "el": "sed -i -E 's/(VERSION_ID=\")9[^\"]*/\\18.9/; s/release 9[.0-9]*/release 8.9/' $(ls /etc/os-release /etc/*-release 2>/dev/null)",
}


def test_an_unsupported_operating_system_is_refused(fresh, tmp_path, settings_of_scenario, valid_vars):
    family = "debian" if fresh.file("/etc/debian_version").exists else "el"
    fresh.run_expect(
        [0], f"tar -C / -cpf /root/release-files.tar $(ls -d {RELEASE_FILES} 2>/dev/null | sed 's,^/,,')"
    )
    try:
        fresh.run_expect([0], MAKE_OLD[family])
        with host_unchanged(fresh):
            result = SiteRun(tmp_path, single_server(settings_of_scenario, valid_vars))
    finally:
        fresh.run_expect([0], "tar -C / -xpf /root/release-files.tar && rm /root/release-files.tar")
    assert_stopped_with(
        result,
        "runs Debian 11.9" if family == "debian" else " 8.9;",
        "supports AlmaLinux, Rocky Linux and RHEL 9, Debian 12",
    )


@pytest.fixture
def copied_release(tmp_path, valid_vars) -> pathlib.Path:
    target = tmp_path / "release"
    shutil.copytree(valid_vars["k3s_airgap_dir"], target)
    return target


def test_a_release_file_that_does_not_match_its_checksum_is_refused(
    fresh, tmp_path, settings_of_scenario, valid_vars, copied_release
):
    with (copied_release / "k3s").open("a") as binary:
        binary.write("# tampered\n")
    inventory = single_server(settings_of_scenario, valid_vars, k3s_airgap_dir=str(copied_release))
    with host_unchanged(fresh):
        result = SiteRun(tmp_path, inventory)
    assert_stopped_with(
        result, f"Checksum mismatch: {copied_release}/k3s has SHA-256", "download k3s and sha256sum-amd64.txt"
    )


def test_a_missing_air_gap_file_is_refused(fresh, tmp_path, settings_of_scenario, valid_vars, copied_release):
    (copied_release / "k3s").unlink()
    inventory = single_server(settings_of_scenario, valid_vars, k3s_airgap_dir=str(copied_release))
    with host_unchanged(fresh):
        result = SiteRun(tmp_path, inventory)
    assert_stopped_with(result, f"The air-gap directory {copied_release} (k3s_airgap_dir) has no k3s")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("host_baseline_selinux_state", "disabled", "host_baseline_selinux_state"),
        ("k3s_install_source", "usb-stick", "k3s_install_source"),
        ("k3s_version", "1.33", 'k3s_version is ["1.33"]: use a k3s release tag'),
        ("k3s_node_taints", ["gpu=yes"], 'k3s_node_taints has ["gpu=yes"]'),
    ],
)
def test_a_bad_inventory_value_is_refused_naming_the_variable(
    fresh, tmp_path, settings_of_scenario, valid_vars, variable, value, message
):
    with host_unchanged(fresh):
        result = SiteRun(tmp_path, single_server(settings_of_scenario, valid_vars, **{variable: value}))
    assert_stopped_with(result, message)


def test_a_generated_token_without_a_vault_password_is_refused(
    fresh, tmp_path, settings_of_scenario, valid_vars
):
    inventory = single_server(
        settings_of_scenario,
        valid_vars,
        k3s_token_vault_password_file="",
        k3s_token_file=str(tmp_path / "token.vault"),
    )
    with host_unchanged(fresh):
        result = SiteRun(tmp_path, inventory)
    assert_stopped_with(result, "needs a vault password file", "or pass k3s_token in a 0600 vars file")
    assert not (tmp_path / "token.vault").exists()


def test_check_mode_on_a_fresh_host_reports_the_plan_and_changes_nothing(
    fresh, tmp_path, settings_of_scenario, valid_vars
):
    inventory = single_server(settings_of_scenario, valid_vars, k3s_token_file=str(tmp_path / "token.vault"))
    with host_unchanged(fresh):
        result = SiteRun(tmp_path, inventory, "--check")
    assert result.returncode == 0, result.describe()
    reported = " | ".join(result.messages(failed=False))
    for plan in (
        "Check mode: would configure fresh",
        "Check mode: firewalld is not running yet",
        "Check mode: would start k3s",
    ):
        assert plan in reported, f"expected {plan!r} among the messages: {reported}"
    assert not (tmp_path / "token.vault").exists(), "check mode wrote the token store"
