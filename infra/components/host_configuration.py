"""Host configuration: runs the project's Ansible playbooks over the nodes and fetches the kubeconfig.

The inventory is generated from the node outputs. A content hash of the Ansible project is the
command's trigger, so editing a role or a variable re-runs the playbooks on the next ``pulumi up``; a
changed inventory or secret re-runs them too. Secrets reach Ansible through a 0600 vars file written
by ``infra/run_ansible.sh`` from the command's (secret) environment, never through its command line.
SSH checks host keys against ``mlstack:sshKnownHosts`` when the stack pins them, else accepts a key on
first contact.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import pulumi
import pulumi_random as random
import yaml
from pulumi_command import local

from infra.components.nodes import Node, NodeSet
from infra.config import NAMESPACE, ConfigError
from infra.paths import project_path
from infra.specs import inventory, ports

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "run_ansible.sh"


def ansible_project(ansible_dir: str) -> pathlib.Path:
    """The stack's Ansible directory (``mlstack:ansibleDir``), checked before anything is declared."""
    directory = project_path(ansible_dir)
    if not (directory / "playbooks" / "site.yml").is_file():
        raise ConfigError(
            f"{NAMESPACE}:ansibleDir: {directory}/playbooks/site.yml not found; point ansibleDir at the "
            "project's ansible/ directory"
        )
    return directory


class HostConfiguration(pulumi.ComponentResource):
    """The Ansible run over every node; its output is the cluster's kubeconfig (a secret)."""

    kubeconfig: pulumi.Output[str]
    inventory: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        ansible_dir: pathlib.Path,
        nodes: NodeSet,
        k3s_version: str,
        nvidia_driver_branch: str,
        k3s_token: pulumi.Output[str] | None,
        ssh_known_hosts: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``ansible_dir``: the project :func:`ansible_project` checked; ``k3s_token``: None = generate one;
        ``ssh_known_hosts``: the pinned host keys (known_hosts text), "" = accept a key on first contact."""
        super().__init__("mlstack:hosts:HostConfiguration", name, None, opts)
        if k3s_token is None:
            k3s_token = random.RandomPassword(
                f"{name}-k3s-token", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result
        self.inventory = _inventory(nodes, k3s_version, nvidia_driver_branch)
        environment: dict[str, pulumi.Input[str]] = {
            "MLSTACK_ANSIBLE_DIR": str(ansible_dir),
            "MLSTACK_INVENTORY": self.inventory,
            "MLSTACK_SECRET_VARS": pulumi.Output.secret(
                k3s_token.apply(lambda token: yaml.safe_dump({"k3s_token": token}))
            ),
            "MLSTACK_WAIT_FOR_CLOUD_INIT": "true" if nodes.wait_for_cloud_init else "false",
        }
        if nodes.ssh_private_key is not None:
            environment["MLSTACK_SSH_PRIVATE_KEY"] = pulumi.Output.secret(nodes.ssh_private_key)
        if ssh_known_hosts:
            environment["MLSTACK_SSH_KNOWN_HOSTS"] = ssh_known_hosts
        playbooks = self._playbooks(name, ansible_dir, environment, nodes.ready)
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(playbooks.stdout, nodes.public_api_endpoint).apply(
                lambda values: inventory.kubeconfig_with_server(
                    values[0], f"https://{values[1]}:{ports.K3S_API}"
                )
            )
        )
        self.register_outputs({"kubeconfig": self.kubeconfig, "inventory": self.inventory})

    def _playbooks(
        self,
        name: str,
        ansible_dir: pathlib.Path,
        environment: dict[str, pulumi.Input[str]],
        ready: Sequence[pulumi.Resource],
    ) -> local.Command:
        """``infra/run_ansible.sh`` as a command; its stdout is the fetched kubeconfig."""
        script = SCRIPT.read_text()
        return local.Command(
            f"{name}-ansible",
            create=script,
            update=script,
            interpreter=["/bin/bash", "-c"],
            environment=environment,
            # Re-run when a role, playbook or variable file changes (inputs above re-run it on their own).
            triggers=[inventory.tree_digest(ansible_dir)],
            # stdout is the kubeconfig: keep it out of the logs and secret in the state.
            logging=local.Logging.STDERR,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(ready), additional_secret_outputs=["stdout"]
            ),
        )


def _inventory(nodes: NodeSet, k3s_version: str, nvidia_driver_branch: str) -> pulumi.Output[str]:
    """The rendered inventory, once every node address and certificate name is known."""
    hosts = [_inventory_host(node) for node in nodes.nodes]
    return pulumi.Output.all(
        pulumi.Output.all(*hosts), nodes.api_endpoint, pulumi.Output.all(*nodes.tls_sans)
    ).apply(
        lambda resolved: inventory.render_inventory(
            inventory.build_inventory(
                resolved[0],
                inventory.ClusterSettings(
                    k3s_version=k3s_version,
                    api_endpoint=resolved[1],
                    tls_sans=tuple(resolved[2]),
                    nvidia_driver_branch=nvidia_driver_branch,
                ),
            )
        )
    )


def _inventory_host(node: Node) -> pulumi.Output[inventory.InventoryHost]:
    return pulumi.Output.all(node.ssh_address, node.internal_address).apply(
        lambda addresses: inventory.InventoryHost(
            name=node.name,
            ssh_address=addresses[0],
            internal_address=addresses[1],
            ssh_user=node.ssh_user,
            groups=node.groups,
            hdfs_data_dirs=node.hdfs_data_dirs,
            kafka_log_dirs=node.kafka_log_dirs,
        )
    )
