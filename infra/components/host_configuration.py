"""Host configuration: runs the project's Ansible playbooks over the nodes and fetches the kubeconfig.

The inventory is generated from the node outputs. A content hash of the Ansible project is the
command's trigger, so editing a role or a variable re-runs the playbooks on the next ``pulumi up``; a
changed inventory or secret re-runs them too. Secrets reach Ansible through a 0600 vars file written
by ``infra/run_ansible.sh`` from the command's (secret) environment, never through its command line.
"""

from __future__ import annotations

import pathlib

import pulumi
import pulumi_random as random
import yaml
from pulumi_command import local

from infra.components.nodes import NodeSet
from infra.config import ConfigError, StackConfig
from infra.paths import project_path
from infra.specs import inventory, ports

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "run_ansible.sh"


def ansible_project(config: StackConfig) -> pathlib.Path:
    """The Ansible directory of the stack, checked before anything is declared."""
    directory = project_path(config.ansible_dir)
    if not (directory / "playbooks" / "site.yml").is_file():
        raise ConfigError(
            f"mlstack:ansibleDir: {directory}/playbooks/site.yml not found; point ansibleDir at the "
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
        config: StackConfig,
        nodes: NodeSet,
        k3s_token: pulumi.Output[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlstack:hosts:HostConfiguration", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        directory = ansible_project(config)
        if k3s_token is None:
            k3s_token = random.RandomPassword(
                f"{name}-k3s-token", length=48, special=False, opts=child
            ).result

        hosts = [
            pulumi.Output.all(node.ssh_address, node.internal_address).apply(
                lambda addresses, node=node: inventory.InventoryHost(
                    name=node.name,
                    ssh_address=addresses[0],
                    internal_address=addresses[1],
                    ssh_user=node.ssh_user,
                    groups=node.groups,
                    hdfs_data_dirs=node.hdfs_data_dirs,
                    kafka_log_dirs=node.kafka_log_dirs,
                )
            )
            for node in nodes.nodes
        ]
        self.inventory = pulumi.Output.all(
            pulumi.Output.all(*hosts), nodes.api_endpoint, pulumi.Output.all(*nodes.tls_sans)
        ).apply(
            lambda resolved: inventory.render_inventory(
                inventory.build_inventory(
                    resolved[0],
                    inventory.ClusterSettings(
                        k3s_version=config.kubernetes_version,
                        api_endpoint=resolved[1],
                        tls_sans=tuple(resolved[2]),
                        nvidia_driver_branch=config.nvidia_driver_branch,
                    ),
                )
            )
        )
        environment: dict[str, pulumi.Input[str]] = {
            "MLSTACK_ANSIBLE_DIR": str(directory),
            "MLSTACK_INVENTORY": self.inventory,
            "MLSTACK_SECRET_VARS": pulumi.Output.secret(
                k3s_token.apply(lambda token: yaml.safe_dump({"k3s_token": token}))
            ),
            "MLSTACK_WAIT_FOR_CLOUD_INIT": "true" if nodes.wait_for_cloud_init else "false",
        }
        if nodes.ssh_private_key is not None:
            environment["MLSTACK_SSH_PRIVATE_KEY"] = pulumi.Output.secret(nodes.ssh_private_key)
        script = SCRIPT.read_text()
        playbooks = local.Command(
            f"{name}-ansible",
            create=script,
            update=script,
            interpreter=["/bin/bash", "-c"],
            environment=environment,
            # Re-run when a role, playbook or variable file changes (inputs above re-run it on their own).
            triggers=[inventory.tree_digest(directory)],
            # stdout is the kubeconfig: keep it out of the logs and secret in the state.
            logging=local.Logging.STDERR,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(nodes.ready), additional_secret_outputs=["stdout"]
            ),
        )
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(playbooks.stdout, nodes.public_api_endpoint).apply(
                lambda values: inventory.kubeconfig_with_server(
                    values[0], f"https://{values[1]}:{ports.K3S_API}"
                )
            )
        )
        self.register_outputs({"kubeconfig": self.kubeconfig, "inventory": self.inventory})
