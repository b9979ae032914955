"""``aws`` node provider: a VPC, a locked-down security group, and EC2 instances per node pool.

Instances run the official AlmaLinux 9 AMI (looked up by owner and name), require IMDSv2, encrypt their
root and data volumes, and accept SSH only with a key generated here (exported as a secret).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from infra.components.nodes import Node, NodeSet
from infra.config import AwsSettings, NodePool
from infra.specs import cloud_init, network


@dataclasses.dataclass(frozen=True)
class _Launch:
    """What every instance launches with."""

    ami_id: pulumi.Output[str]
    security_group: aws.ec2.SecurityGroup
    key_pair: aws.ec2.KeyPair


class AwsNodes(pulumi.ComponentResource):
    """The network and the machines of an ``aws`` stack."""

    node_set: NodeSet
    ssh_private_key: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: AwsSettings,
        pools: Sequence[NodePool],
        admin_cidrs: Sequence[str],
        tls_sans: Sequence[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``admin_cidrs`` may reach SSH and the API; ``tls_sans`` are extra names of the API certificate."""
        super().__init__("mlstack:nodes:AwsNodes", name, None, opts)
        self._name = name
        self._settings = settings
        self._child = pulumi.ResourceOptions(parent=self)
        self._tags = {"mlstack:stack": pulumi.get_stack(), "mlstack:managed-by": "pulumi"}

        vpc, subnets = self._network()
        group = self._security_group(vpc, admin_cidrs)
        key = tls.PrivateKey(f"{name}-ssh-key", algorithm="ED25519", opts=self._child)
        key_pair = aws.ec2.KeyPair(
            f"{name}-key", public_key=key.public_key_openssh, tags=self._tags, opts=self._child
        )
        self.ssh_private_key = pulumi.Output.secret(key.private_key_openssh)
        ami = self._ami()
        nodes, attachments = self._nodes(pools, subnets, _Launch(ami.id, group, key_pair))

        first_server = next(n for n in nodes if "k3s_servers" in n.groups)
        self.node_set = NodeSet(
            nodes=nodes,
            node_cidr=settings.vpc_cidr,
            api_endpoint=first_server.internal_address,
            public_api_endpoint=first_server.ssh_address,
            tls_sans=[*tls_sans, first_server.ssh_address],
            ssh_private_key=self.ssh_private_key,
            wait_for_cloud_init=True,
            ready=attachments,
        )
        self.register_outputs(
            {
                "vpcId": vpc.id,
                "securityGroupId": group.id,
                "amiId": ami.id,
                "nodes": {n.name: n.ssh_address for n in nodes},
                "sshPrivateKey": self.ssh_private_key,
            }
        )

    def _network(self) -> tuple[aws.ec2.Vpc, dict[str, aws.ec2.Subnet]]:
        """The VPC and one public subnet per availability zone, routed to an internet gateway."""
        name, child, tags = self._name, self._child, self._tags
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=self._settings.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        # The VPC's default security group gets no rules, so nothing can use it by accident.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, tags=tags, opts=child)
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
        routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=network.ANYWHERE, gateway_id=gateway.id)],
            tags=tags,
            opts=child,
        )
        subnets = {}
        zones = self._settings.availability_zones
        for zone, cidr in network.subnet_cidrs(self._settings.vpc_cidr, zones).items():
            subnet = aws.ec2.Subnet(
                f"{name}-subnet-{zone}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                map_public_ip_on_launch=True,
                tags={**tags, "Name": f"{name}-{zone}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}", subnet_id=subnet.id, route_table_id=routes.id, opts=child
            )
            subnets[zone] = subnet
        return vpc, subnets

    def _security_group(self, vpc: aws.ec2.Vpc, admin_cidrs: Sequence[str]) -> aws.ec2.SecurityGroup:
        name, child = self._name, self._child
        group = aws.ec2.SecurityGroup(
            f"{name}-cluster",
            vpc_id=vpc.id,
            description="mlstack nodes: only the ports the platform's components need",
            tags=self._tags,
            opts=child,
        )
        directions = (
            ("in", network.ingress_rules(admin_cidrs), aws.vpc.SecurityGroupIngressRule),
            ("out", network.egress_rules(), aws.vpc.SecurityGroupEgressRule),
        )
        for direction, rules, rule_resource in directions:
            for rule in rules:
                rule_resource(
                    f"{name}-{direction}-{rule.name}",
                    security_group_id=group.id,
                    description=rule.description,
                    ip_protocol=rule.protocol,
                    from_port=rule.from_port,
                    to_port=rule.to_port,
                    cidr_ipv4=rule.cidr,
                    referenced_security_group_id=group.id if rule.cidr is None else None,
                    opts=child,
                )
        return group

    def _ami(self) -> pulumi.Output[aws.ec2.GetAmiResult]:
        """The newest x86_64 HVM EBS image that matches the configured owner and name."""
        return aws.ec2.get_ami_output(
            owners=[self._settings.ami_owner],
            most_recent=True,
            filters=[
                aws.ec2.GetAmiFilterArgs(name="name", values=[self._settings.ami_name_pattern]),
                aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"]),
                aws.ec2.GetAmiFilterArgs(name="root-device-type", values=["ebs"]),
                aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            ],
            opts=pulumi.InvokeOptions(parent=self),
        )

    def _nodes(
        self, pools: Sequence[NodePool], subnets: Mapping[str, aws.ec2.Subnet], launch: _Launch
    ) -> tuple[list[Node], list[pulumi.Resource]]:
        """Every pool's instances, spread round-robin over the zones; and their data volume attachments."""
        zones = itertools.cycle(self._settings.availability_zones)
        nodes: list[Node] = []
        attachments: list[pulumi.Resource] = []
        for pool in pools:
            for index in range(pool.count):
                zone = next(zones)
                node, attachment = self._node(pool, index, zone, subnets[zone], launch)
                nodes.append(node)
                if attachment is not None:
                    attachments.append(attachment)
        return nodes, attachments

    def _node(
        self, pool: NodePool, index: int, zone: str, subnet: aws.ec2.Subnet, launch: _Launch
    ) -> tuple[Node, pulumi.Resource | None]:
        node_name = f"{pool.name}-{index}"
        tags = {**self._tags, "Name": node_name, "mlstack:pool": pool.name}
        volume = None
        if pool.data_volume_gb:
            volume = self._data_volume(node_name, zone, pool.data_volume_gb, tags)
        instance = self._instance(node_name, pool.instance_type, subnet, launch, volume, tags)
        ssh_address: pulumi.Input[str] = instance.public_ip
        if "k3s_servers" in pool.groups:
            # A fixed address for the API server and the kubeconfig that points at it.
            address = aws.ec2.Eip(
                f"{self._name}-{node_name}-ip",
                domain="vpc",
                instance=instance.id,
                tags=tags,
                opts=self._child,
            )
            ssh_address = address.public_ip
        attachment = None
        if volume is not None:
            attachment = aws.ec2.VolumeAttachment(
                f"{self._name}-{node_name}-data",
                device_name="/dev/sdf",
                volume_id=volume.id,
                instance_id=instance.id,
                opts=self._child,
            )
        directories = cloud_init.data_directories(pool.groups)
        node = Node(
            name=node_name,
            groups=pool.groups,
            ssh_address=ssh_address,
            internal_address=instance.private_ip,
            ssh_user=self._settings.ssh_user,
            hdfs_data_dirs=tuple(directories.get("hdfs_datanode_data_dirs", ())),
            kafka_log_dirs=tuple(directories.get("kafka_log_dirs", ())),
        )
        return node, attachment

    def _data_volume(self, node_name: str, zone: str, size_gb: int, tags: dict[str, str]) -> aws.ebs.Volume:
        """The node's encrypted data volume for HDFS and Kafka (mounted by the instance's user data)."""
        return aws.ebs.Volume(
            f"{self._name}-{node_name}-data",
            availability_zone=zone,
            size=size_gb,
            type="gp3",
            encrypted=True,
            tags={**tags, "Name": f"{node_name}-data"},
            opts=self._child,
        )

    def _instance(
        self,
        node_name: str,
        instance_type: str,
        subnet: aws.ec2.Subnet,
        launch: _Launch,
        volume: aws.ebs.Volume | None,
        tags: dict[str, str],
    ) -> aws.ec2.Instance:
        return aws.ec2.Instance(
            f"{self._name}-{node_name}",
            ami=launch.ami_id,
            instance_type=instance_type,
            subnet_id=subnet.id,
            vpc_security_group_ids=[launch.security_group.id],
            key_name=launch.key_pair.key_name,
            ebs_optimized=True,
            monitoring=True,
            # IMDSv2 only, one hop: pods (one hop further) cannot read the node's credentials.
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3",
                volume_size=self._settings.root_volume_gb,
                encrypted=True,
                delete_on_termination=True,
                # Tags on the root device itself: `volume_tags` would fight the data volume's own tags.
                tags={**tags, "Name": f"{node_name}-root"},
            ),
            user_data=volume.id.apply(cloud_init.data_volume_script) if volume is not None else None,
            tags=tags,
            opts=self._child,
        )
