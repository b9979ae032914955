"""Fixtures shared by the testinfra tests of every molecule scenario.

Molecule's verifier runs pytest with `--connection=ansible` against the scenario inventory; these
fixtures read what the roles were asked to do (role defaults overridden by inventory variables) and
check services so that a failure shows the unit's journal.
"""

import json
import os
import pathlib
from collections.abc import Callable

import pytest
import testinfra.utils.ansible_runner
import yaml

ANSIBLE_DIR = pathlib.Path(__file__).resolve().parents[1]
ROLES_DIR = ANSIBLE_DIR / "roles"


def inventory_hosts(pattern: str) -> list[str]:
    """Hosts of the scenario inventory matching an Ansible pattern, for `testinfra_hosts`."""
    runner = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    return runner.get_hosts(pattern)


def inventory_host(name: str):
    """A testinfra host for another inventory host of the scenario (e.g. to run kubectl on the first server)."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


def checked(result) -> str:
    """The output of a command testinfra ran, which must have succeeded (else its command and stderr)."""
    assert result.rc == 0, f"{result.command}\n{result.stderr[-3000:]}"
    return result.stdout


def role_defaults(role: str) -> dict:
    return yaml.safe_load((ROLES_DIR / role / "defaults" / "main.yml").read_text()) or {}


_INVENTORY_VARIABLES: dict[str, dict] = {}


@pytest.fixture(scope="session")
def scenario_vars() -> Callable[..., dict]:
    """scenario_vars(*names, **expressions): variables (or Jinja expressions) rendered by Ansible, cached."""
    cache: dict[str, object] = {}

    def render(*names: str, **expressions: str) -> dict:
        wanted = {name: name for name in names} | expressions
        missing = {key: expression for key, expression in wanted.items() if key not in cache}
        if missing:
            first = inventory_host(inventory_hosts("all")[0])
            mapping = (
                "{{ {" + ", ".join(f"'{key}': {expression}" for key, expression in missing.items()) + "} }}"
            )
            cache.update(first.ansible("debug", f"msg={mapping}", check=False)["msg"])
        return {key: cache[key] for key in wanted}

    return render


@pytest.fixture
def settings(host) -> Callable[[str], dict]:
    """settings(role): the role's defaults with this host's inventory variables on top."""
    name = host.backend.get_hostname()
    if name not in _INVENTORY_VARIABLES:
        _INVENTORY_VARIABLES[name] = host.ansible.get_variables()
    variables = _INVENTORY_VARIABLES[name]

    def merged(role: str) -> dict:
        defaults = role_defaults(role)
        return {key: variables.get(key, value) for key, value in defaults.items()}

    return merged


@pytest.fixture
def assert_running(host) -> Callable[[str], None]:
    """assert_running(unit): the unit is active and enabled; otherwise fail with its journal."""

    def check(unit: str, enabled: bool = True) -> None:
        service = host.service(unit)
        active, is_enabled = service.is_running, service.is_enabled
        if active and (is_enabled or not enabled):
            return
        journal = host.run(f"journalctl --unit {unit} --lines 40 --no-pager").stdout
        status = host.run(f"systemctl status {unit} --no-pager").stdout
        pytest.fail(
            f"{unit} on {host.backend.get_hostname()}: active={active} enabled={is_enabled}\n"
            f"--- systemctl status ---\n{status}\n--- journal ---\n{journal}"
        )

    return check


def probe_ports(host, targets: list[tuple[str, int]]) -> dict[str, str]:
    """Connect from `host` to each (address, port); returns {"address:port": error} for those that failed."""
    script = (
        "import json, socket, sys\n"
        "failed = {}\n"
        "for target, port in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        socket.create_connection((target, port), 3).close()\n"
        "    except OSError as error:\n"
        "        failed[f'{target}:{port}'] = str(error)\n"
        "print(json.dumps(failed))\n"
    )
    result = host.run("python3 -c %s %s", script, json.dumps(targets))
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def read_file(host) -> Callable[[str], str]:
    """read_file(path): the file's content; fails naming the path when it is missing."""

    def read(path: str) -> str:
        file = host.file(path)
        assert file.exists, f"{path} is missing on {host.backend.get_hostname()}"
        return file.content_string

    return read
