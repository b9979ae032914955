"""Rules every role follows: argument specs equal to the defaults, documented variables, per-OS data
that agree, and lint (ansible-lint production profile, yamllint)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.ansible.support import ANSIBLE_DIR, ROLES_DIR, ROOT, VENV_BIN, load_yaml, roles
from tests.support import interfaces

# Inventory variables that belong to no role (so no role defaults them) but that roles read: each such role
# documents it in its argument spec, without a default.
SHARED_INVENTORY_VARIABLES = {"cluster_address"}


def argument_specs(role: str) -> dict:
    return load_yaml(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]


def defaults(role: str) -> dict:
    path = ROLES_DIR / role / "defaults" / "main.yml"
    return (load_yaml(path) or {}) if path.exists() else {}


def role_code(role: str) -> str:
    """What in the role reads variables: its tasks, vars and templates."""
    return "\n".join(
        path.read_text()
        for part in ("tasks", "vars", "templates")
        for path in sorted((ROLES_DIR / role / part).glob("*"))
        if path.is_file()
    )


@pytest.mark.parametrize("role", roles())
def test_argument_spec_lists_exactly_the_role_defaults(role):
    options = set(argument_specs(role)["main"]["options"]) - SHARED_INVENTORY_VARIABLES
    assert sorted(options) == sorted(defaults(role)), (
        "meta/argument_specs.yml and defaults/main.yml name different variables"
    )


def test_the_shared_inventory_variables_are_the_documented_inventory_variables_no_role_owns():
    assert interfaces.inventory_variables() >= SHARED_INVENTORY_VARIABLES
    assert not SHARED_INVENTORY_VARIABLES & {name for role in roles() for name in defaults(role)}


@pytest.mark.parametrize("role", roles())
def test_a_role_that_reads_a_shared_inventory_variable_documents_it_without_a_default(role):
    options = argument_specs(role)["main"]["options"]
    code = role_code(role)
    for name in SHARED_INVENTORY_VARIABLES:
        read = re.search(rf"\b{name}\b", code) is not None
        assert (name in options) == read, (
            f"{name}: read by the role: {read}; in its argument spec: {not read}"
        )
        if read:
            assert "default" not in options[name], f"{name} comes from the inventory; the role has no default"
            comment = f"# {name} (an inventory variable"
            assert comment in (ROLES_DIR / role / "defaults" / "main.yml").read_text(), (
                f"defaults/main.yml does not say where {name} comes from"
            )


@pytest.mark.parametrize("role", roles())
def test_argument_spec_defaults_equal_the_role_defaults(role):
    options = argument_specs(role)["main"]["options"]
    mismatched = {
        name: (spec.get("default"), defaults(role)[name])
        for name, spec in options.items()
        if name in defaults(role) and spec.get("default") != defaults(role)[name]
    }
    assert not mismatched, f"argument spec default != defaults/main.yml: {mismatched}"


@pytest.mark.parametrize("role", roles())
def test_every_entry_point_validates_the_same_options_as_main(role):
    specs = argument_specs(role)
    different = [name for name, spec in specs.items() if spec["options"] != specs["main"]["options"]]
    assert not different, f"entry points {different} validate other options than main"


@pytest.mark.parametrize("role", roles())
def test_every_public_variable_is_prefixed_with_the_role_family(role):
    family = "k3s_" if role.startswith("k3s") else f"{role}_"
    unprefixed = [name for name in defaults(role) if not name.startswith(family)]
    assert not unprefixed, f"public variables must start with {family}: {unprefixed}"


@pytest.mark.parametrize("role", roles())
def test_readme_has_a_table_row_for_every_variable(role):
    readme = ROLES_DIR / role / "README.md"
    assert readme.exists(), f"{role} has no README.md"
    documented = re.findall(r"^\|\s*`([a-z0-9_]+)`\s*\|", readme.read_text(), flags=re.M)
    assert sorted(documented) == sorted(argument_specs(role)["main"]["options"]), (
        "README variable table out of date"
    )


@pytest.mark.parametrize("role", roles())
def test_every_default_has_a_comment(role):
    lines = (ROLES_DIR / role / "defaults" / "main.yml").read_text().splitlines()
    uncommented = [
        line.split(":")[0]
        for index, line in enumerate(lines)
        if re.match(r"^[a-z0-9_]+:", line) and not (index and lines[index - 1].startswith("#"))
    ]
    assert not uncommented, f"defaults without a comment above them: {uncommented}"


def test_per_os_variable_files_of_host_baseline_define_the_same_keys():
    files = sorted((ROLES_DIR / "host_baseline" / "vars").glob("[A-Z]*.yml"))
    keys = {path.name: sorted(load_yaml(path)) for path in files}
    assert len(set(map(tuple, keys.values()))) == 1, keys


@pytest.mark.slow
def test_ansible_lint_passes_with_the_production_profile():
    result = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--offline", "--nocolor", "-f", "pep8"],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_yamllint_passes_strict():
    paths = [str(ANSIBLE_DIR), str(ROOT / ".config"), str(ROOT / "tests" / "ansible")]
    result = subprocess.run(
        [str(VENV_BIN / "yamllint"), "--strict", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_example_inventory_names_only_variables_the_roles_know():
    known = {name for role in roles() for name in argument_specs(role)["main"]["options"]}
    mine = re.compile(
        r"^#?\s*((?:k3s|host_baseline|firewalld_service|hdfs|kafka|nvidia_gpu|java_runtime)_[a-z0-9_]+):",
        re.M,
    )
    example = ANSIBLE_DIR / "inventories" / "example"
    named = {
        (path.relative_to(example).as_posix(), name)
        for path in sorted((example / "group_vars").glob("*.yml"))
        + sorted((example / "host_vars").glob("*.yml"))
        for name in mine.findall(path.read_text())
    }
    unknown = sorted((path, name) for path, name in named if name not in known)
    assert named, "the example inventory names no role variable: the pattern is wrong"
    assert not unknown, f"the example inventory names variables no role has: {unknown}"
