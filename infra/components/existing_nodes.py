"""``existing`` node provider: machines listed in the stack config, reached over SSH."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from infra.components.nodes import Node, NodeSet
from infra.config import ExistingHost


class ExistingNodes(pulumi.ComponentResource):
    """Hosts that already exist; declares nothing but their inventory entries."""

    node_set: NodeSet

    def __init__(
        self,
        name: str,
        hosts: Sequence[ExistingHost],
        node_cidr: str,
        api_endpoint: str,
        tls_sans: Sequence[str],
        ssh_private_key: pulumi.Output[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``api_endpoint``: the API address ("" = the first k3s server); ``tls_sans``: extra certificate names."""
        super().__init__("mlstack:nodes:ExistingNodes", name, None, opts)
        nodes = [
            Node(
                name=host.name,
                groups=host.groups,
                ssh_address=host.address,
                internal_address=host.internal_address,
                ssh_user=host.ssh_user,
                hdfs_data_dirs=host.hdfs_data_dirs,
                kafka_log_dirs=host.kafka_log_dirs,
            )
            for host in hosts
        ]
        first_server = next(n for n in nodes if "k3s_servers" in n.groups)
        endpoint = api_endpoint or str(first_server.internal_address)
        self.node_set = NodeSet(
            nodes=nodes,
            node_cidr=node_cidr,
            api_endpoint=endpoint,
            public_api_endpoint=api_endpoint or str(first_server.ssh_address),
            tls_sans=[*tls_sans, endpoint, str(first_server.ssh_address)],
            ssh_private_key=ssh_private_key,
            wait_for_cloud_init=False,
        )
        self.register_outputs({"nodes": {n.name: n.ssh_address for n in nodes}})
