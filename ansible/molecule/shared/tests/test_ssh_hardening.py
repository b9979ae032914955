"""SSH hardening as the SSH daemon itself reports it (`sshd -T`), where host_baseline_ssh_hardening is on."""

import pytest
from conftest import inventory_hosts

testinfra_hosts = inventory_hosts("all")


@pytest.fixture(autouse=True)
def hardening_on(settings):
    if not settings("host_baseline")["host_baseline_ssh_hardening"]:
        pytest.skip("host_baseline_ssh_hardening is off for this host")


@pytest.fixture
def effective_sshd(host) -> dict[str, str]:
    lines = host.check_output("sshd -T").splitlines()
    return {key: value for key, _, value in (line.partition(" ") for line in lines)}


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("permitemptypasswords", "no"),
        ("x11forwarding", "no"),
        ("maxauthtries", "3"),
        ("logingracetime", "30"),
    ],
)
def test_sshd_runs_with_the_hardened_setting(effective_sshd, keyword, value):
    assert effective_sshd[keyword] == value


def test_sshd_lets_root_in_with_keys_only(effective_sshd, settings):
    assert effective_sshd["permitrootlogin"] == settings("host_baseline")[
        "host_baseline_ssh_permit_root_login"
    ].replace("prohibit-password", "without-password")


def test_sshd_admits_only_the_allowed_groups(effective_sshd, settings):
    assert (
        effective_sshd["allowgroups"].split() == settings("host_baseline")["host_baseline_ssh_allow_groups"]
    )


def test_sshd_is_running(host, assert_running):
    assert_running("ssh" if host.system_info.distribution in ("debian", "ubuntu") else "sshd")
