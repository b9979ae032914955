"""requirements.yml is satisfiable offline: every collection it names ships, at a version it accepts,
with the `ansible` PyPI package (Galaxy is unreachable here)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.ansible.support import ANSIBLE_DIR, VENV_BIN, ansible_env, load_yaml

REQUIREMENTS = load_yaml(ANSIBLE_DIR / "requirements.yml")["collections"]


@pytest.fixture(scope="module")
def installed() -> dict[str, str]:
    result = subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "list", "--format", "json"],
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=120,
        check=True,
    )
    versions: dict[str, str] = {}
    for collections in json.loads(result.stdout).values():
        for name, info in collections.items():
            versions.setdefault(name, info["version"])
    return versions


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=[r["name"] for r in REQUIREMENTS])
def test_required_collection_is_installed_at_an_accepted_version(installed, requirement):
    assert requirement["name"] in installed, (
        f"{requirement['name']} is not installed; install the ansible extra"
    )
    specifier = SpecifierSet(requirement["version"].replace(" ", ""))
    assert Version(installed[requirement["name"]]) in specifier, (
        f"{requirement['name']} {installed[requirement['name']]} does not satisfy {requirement['version']}"
    )


# Where content names a collection: a module (task key), a filter or lookup, a connection plugin.
COLLECTION_USES = (
    re.compile(r"^\s*(?:- )?([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+:\s*$", re.M),
    re.compile(r"\|\s*([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+"),
    re.compile(r"(?:lookup|query)\('([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+'"),
    re.compile(r"connection: ([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+"),
)


def test_every_collection_the_content_uses_is_required():
    used = {
        match
        for path in ANSIBLE_DIR.rglob("*.yml")
        for pattern in COLLECTION_USES
        for match in pattern.findall(path.read_text())
        if match != "ansible.builtin"
    }
    required = {requirement["name"] for requirement in REQUIREMENTS}
    assert used, "found no collection use at all: the patterns are wrong"
    assert used <= required, f"used but not in requirements.yml: {sorted(used - required)}"
