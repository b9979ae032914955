"""mlstack_file_state (ansible/library/) tells the roles which paths they must write: a path is reported
as matching only when its type, content, mode, owner, group and link target are all as wanted, since the
roles skip the write of every matching path."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pathlib
import pwd
import subprocess
import sys

import pytest

from tests.ansible.support import ANSIBLE_DIR

MODULE = ANSIBLE_DIR / "library" / "mlstack_file_state.py"
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
CONTENT = b"net.ipv4.ip_forward = 1\n"


def probe(tmp_path: pathlib.Path, files: list[dict]) -> dict:
    """Runs the module as Ansible does on a host (arguments in a JSON file), returns its result."""
    arguments = tmp_path / "arguments.json"
    arguments.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"files": files}}))
    process = subprocess.run(
        [sys.executable, str(MODULE), str(arguments)], capture_output=True, text=True, timeout=60, check=False
    )
    result = json.loads(process.stdout)
    assert not result.get("failed"), result
    return result


@pytest.fixture
def config_file(tmp_path) -> dict:
    path = tmp_path / "90-mlstack.conf"
    path.write_bytes(CONTENT)
    path.chmod(0o644)
    return {
        "path": str(path),
        "sha256": hashlib.sha256(CONTENT).hexdigest(),
        "mode": "0644",
        "owner": OWNER,
        "group": GROUP,
    }


def test_a_file_with_the_wanted_content_mode_and_owner_matches(tmp_path, config_file):
    result = probe(tmp_path, [config_file])
    assert result["matching"] == [config_file["path"]]
    assert result["differ"] == []
    assert result["changed"] is False


@pytest.mark.parametrize(
    ("wanted", "reason"),
    [
        ({"sha256": hashlib.sha256(b"other\n").hexdigest()}, "content"),
        ({"mode": "0600"}, "mode 0644"),
        ({"owner": "nobody-such-user"}, f"owner {OWNER}"),
        ({"group": "nobody-such-group"}, f"group {GROUP}"),
        ({"state": "directory"}, "not a directory"),
    ],
)
def test_a_file_that_differs_in_anything_is_reported_with_what_differs(tmp_path, config_file, wanted, reason):
    result = probe(tmp_path, [{**config_file, **wanted}])
    assert result["matching"] == []
    assert result["reasons"] == {config_file["path"]: reason}


def test_a_missing_file_is_reported_and_the_others_are_still_looked_at(tmp_path, config_file):
    missing = str(tmp_path / "absent.conf")
    result = probe(tmp_path, [{"path": missing, "mode": "0644"}, config_file])
    assert result["differ"] == [missing]
    assert result["reasons"][missing] == "missing"
    assert result["matching"] == [config_file["path"]]


def test_a_directory_matches_on_type_mode_and_owner(tmp_path):
    directory = tmp_path / "images"
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
    wanted = {"path": str(directory), "state": "directory", "mode": "0700", "owner": OWNER}
    assert probe(tmp_path, [wanted])["matching"] == [str(directory)]
    assert probe(tmp_path, [{**wanted, "mode": "0755"}])["reasons"] == {str(directory): "mode 0700"}


def test_a_link_matches_only_with_the_wanted_target(tmp_path, config_file):
    link = tmp_path / "kubectl"
    link.symlink_to(config_file["path"])
    wanted = {"path": str(link), "state": "link", "src": config_file["path"]}
    assert probe(tmp_path, [wanted])["matching"] == [str(link)]
    other = probe(tmp_path, [{**wanted, "src": "/usr/local/bin/k3s"}])
    assert other["reasons"] == {str(link): f"link to {config_file['path']}"}
    # A link where a file is wanted is not that file, whatever it points to.
    assert probe(tmp_path, [{**config_file, "path": str(link)}])["reasons"] == {str(link): "not a file"}


def test_the_wanted_checksum_is_not_echoed_in_the_result(tmp_path, config_file):
    # The checksum of a token file would let a weak token be guessed from the logs.
    result = probe(tmp_path, [config_file])
    assert config_file["sha256"] not in json.dumps(result)
