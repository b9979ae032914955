"""What host_baseline leaves on every host of a scenario (shared by the scenarios that apply it)."""

import pathlib
import re

import pytest
import yaml
from conftest import ROLES_DIR, inventory_hosts

testinfra_hosts = inventory_hosts("all")


def os_vars(host) -> dict:
    info = host.system_info
    candidates = [f"{info.distribution.capitalize()}-{info.release.split('.')[0]}.yml"]
    candidates += (
        ["RedHat-9.yml"]
        if info.distribution.lower() in ("almalinux", "rocky", "redhat", "rhel")
        else ["Debian.yml"]
    )
    for name in candidates:
        path = ROLES_DIR / "host_baseline" / "vars" / name
        if path.exists():
            return yaml.safe_load(path.read_text())
    raise AssertionError(f"no host_baseline vars file for {info.distribution} {info.release}")


def test_base_packages_are_installed(host):
    wanted = os_vars(host)["__host_baseline_packages"] + os_vars(host)["__host_baseline_firewalld_packages"]
    missing = [name for name in wanted if not host.package(name).is_installed]
    assert not missing, f"not installed: {missing}"


def test_firewalld_runs_with_the_baseline_services_in_the_default_zone(host, settings, assert_running):
    wanted = settings("host_baseline")
    assert_running("firewalld")
    zone = host.check_output("firewall-cmd --get-default-zone")
    assert zone == wanted["host_baseline_firewalld_zone"]
    services = host.check_output(f"firewall-cmd --zone={zone} --list-services").split()
    assert set(wanted["host_baseline_firewalld_services"]) <= set(services), services
    permanent = host.check_output(f"firewall-cmd --permanent --zone={zone} --list-services").split()
    assert set(wanted["host_baseline_firewalld_services"]) <= set(permanent), (
        "runtime-only rules would vanish at reload"
    )


def test_kernel_parameters_are_persisted(host, settings, read_file):
    wanted = settings("host_baseline")
    expected = {
        k: str(v)
        for k, v in {**wanted["host_baseline_sysctls"], **wanted["host_baseline_sysctls_extra"]}.items()
    }
    lines = [
        line
        for line in read_file("/etc/sysctl.d/90-mlstack.conf").splitlines()
        if line and not line.startswith("#")
    ]
    assert dict(re.split(r"\s*=\s*", line, maxsplit=1) for line in lines) == expected


def test_kernel_modules_load_at_boot(host, settings, read_file):
    lines = [
        line
        for line in read_file("/etc/modules-load.d/mlstack.conf").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == settings("host_baseline")["host_baseline_kernel_modules"]


def test_session_limits_are_written(host, settings, read_file):
    lines = [
        line.split()
        for line in read_file("/etc/security/limits.d/90-mlstack.conf").splitlines()
        if line and not line.startswith("#")
    ]
    expected = [
        [str(x[k]) for k in ("domain", "type", "item", "value")]
        for x in settings("host_baseline")["host_baseline_limits"]
    ]
    assert lines == expected


def test_swap_stays_off_after_reboot(host):
    fstab = host.file("/etc/fstab")
    active_swap = (
        [line for line in fstab.content_string.splitlines() if re.match(r"^\s*[^#\s]+\s+\S+\s+swap\s", line)]
        if fstab.exists
        else []
    )
    assert not active_swap, f"swap entries still active in /etc/fstab: {active_swap}"


def test_time_sync_is_enabled(host, settings):
    unit = os_vars(host)["__host_baseline_chrony_service"]
    assert host.service(unit).is_enabled, f"{unit} is not enabled"
    servers = settings("host_baseline")["host_baseline_ntp_servers"]
    if servers:
        config = host.file(os_vars(host)["__host_baseline_chrony_config"]).content_string
        assert [line.split()[1] for line in config.splitlines() if line.startswith("server ")] == servers


@pytest.mark.parametrize(
    "path",
    [
        "/etc/sysctl.d/90-mlstack.conf",
        "/etc/modules-load.d/mlstack.conf",
        "/etc/security/limits.d/90-mlstack.conf",
    ],
)
def test_configuration_files_are_root_owned_and_not_world_writable(host, path):
    file = host.file(path)
    assert file.user == "root" and file.group == "root"
    assert not file.mode & 0o002, f"{path} mode {oct(file.mode)}"
    assert pathlib.PurePosixPath(path).is_absolute()
