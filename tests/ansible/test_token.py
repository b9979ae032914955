"""The cluster token: taken from k3s_token, else from the vault-encrypted store, else adopted from the
running cluster, else generated once and stored encrypted; never printed; a token that differs from the
running cluster's stops the run. Runs the k3s role's token tasks on the controller (localhost)."""

from __future__ import annotations

import pathlib
import sys

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from tests.ansible.support import run_playbook

PLAYBOOK = pathlib.Path(__file__).with_name("playbooks") / "token.yml"


class TokenRun:
    def __init__(self, workdir: pathlib.Path, *args: str) -> None:
        inventory = workdir / "inventory.yml"
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        inventory.write_text(
            yaml.safe_dump({"all": {"children": {"k3s_servers": {"hosts": {"localhost": host}}}}})
        )
        self.out = workdir / "token.out"
        self.out.unlink(missing_ok=True)
        variables = {
            "token_out": str(self.out),
            "k3s_token_file": str(workdir / "k3s-token.vault"),
            "k3s_token_vault_password_file": str(workdir / "vault-password"),
            # Where the first server keeps the token of a running cluster (normally /etc/rancher/k3s/cluster-token).
            "_k3s_token_path": str(workdir / "cluster-token"),
        }
        extra = [item for name, value in variables.items() for item in ("-e", f"{name}={value}")]
        self.process = run_playbook(PLAYBOOK, inventory, *extra, *args)
        self.output = self.process.stdout + self.process.stderr

    @property
    def token(self) -> str:
        assert self.process.returncode == 0, self.output[-3000:]
        return self.out.read_text()


@pytest.fixture
def workdir(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "vault-password").write_text("test-vault-password\n")
    return tmp_path


def decrypt(workdir: pathlib.Path) -> str:
    secret = VaultSecret((workdir / "vault-password").read_bytes().strip())
    return VaultLib([("default", secret)]).decrypt((workdir / "k3s-token.vault").read_bytes()).decode()


def test_a_given_token_is_used_and_nothing_is_stored(workdir):
    run = TokenRun(workdir, "-e", "k3s_token=given-token-0123456789")
    assert run.token == "given-token-0123456789"
    assert not (workdir / "k3s-token.vault").exists()


def test_without_a_token_one_is_generated_and_stored_vault_encrypted(workdir):
    token = TokenRun(workdir).token
    assert len(token) == 48 and token.isalnum()
    store = workdir / "k3s-token.vault"
    assert store.read_text().startswith("$ANSIBLE_VAULT;"), "the stored token must be vault-encrypted"
    assert oct(store.stat().st_mode & 0o777) == "0o600"
    assert decrypt(workdir) == token


def test_the_generated_token_is_reused_by_later_runs(workdir):
    first = TokenRun(workdir).token
    assert TokenRun(workdir).token == first


def test_a_running_cluster_keeps_its_token_when_the_store_is_lost(workdir):
    (workdir / "cluster-token").write_text("token-of-the-running-cluster\n")
    assert TokenRun(workdir).token == "token-of-the-running-cluster"
    assert decrypt(workdir) == "token-of-the-running-cluster"


def test_a_token_other_than_the_running_clusters_stops_the_run(workdir):
    (workdir / "cluster-token").write_text("token-of-the-running-cluster\n")
    run = TokenRun(workdir, "-e", "k3s_token=another-token")
    assert run.process.returncode != 0
    assert "runs with another token than the one this run would use (k3s_token)" in run.output
    assert "another-token" not in run.output and "token-of-the-running-cluster" not in run.output


def test_the_token_is_never_printed_even_verbosely(workdir):
    run = TokenRun(workdir, "-vvv")
    assert run.token not in run.output
    assert "censored" in run.output or "no_log" in run.output
