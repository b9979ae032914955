"""Runs the Pulumi program (``infra/__main__.py``) under ``pulumi.runtime.set_mocks`` for a stack file.

``FakeCloud`` is the test double for the Pulumi engine and its providers (no CLI or provider plugin
exists here): it records every resource the program declares with its inputs, answers the one invoke
the program makes (the AMI lookup), and returns plausible outputs: instance and Elastic IP addresses,
EBS volume ids, a generated SSH key, random passwords, and for the Ansible command a kubeconfig
(``FAKE_KUBECONFIG``) in place of running the playbooks against real machines.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import runpy
from collections.abc import Mapping
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "infra" / "__main__.py"
STACKS = ("aws-example", "baremetal-example")
FAKE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: default
  cluster:
    certificate-authority-data: ZmFrZQ==
    server: https://127.0.0.1:6443
contexts:
- name: default
  context: {cluster: default, user: default}
current-context: default
users:
- name: default
  user: {client-certificate-data: ZmFrZQ==, client-key-data: ZmFrZQ==}
"""
# rpc.py marks a secret value in deserialized inputs with this signature key.
_SECRET_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_MARK = "1b47061264138c4ac30d75fd1eb44270"


@dataclasses.dataclass(frozen=True)
class Declared:
    """One resource the program declared: its type token, logical name and (plain) inputs."""

    type: str
    name: str
    inputs: dict[str, Any]
    secret_inputs: frozenset[str]
    """Top-level inputs that arrived marked secret."""

    @property
    def is_kubernetes_object(self) -> bool:
        return self.type.startswith("kubernetes:") and "kind" in self.inputs and "helm.sh" not in self.type

    @property
    def kind(self) -> str:
        return self.inputs.get("kind", "")


@dataclasses.dataclass(frozen=True)
class ProgramRun:
    stack: str
    resources: list[Declared]
    exports: dict[str, tuple[Any, bool]]
    """Stack output name -> (value, is secret)."""
    invokes: list[tuple[str, dict[str, Any]]]

    def of_type(self, token: str) -> list[Declared]:
        return [r for r in self.resources if r.type == token]

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        return [r.inputs for r in self.resources if r.is_kubernetes_object]

    def objects_of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.kubernetes_objects() if obj["kind"] == kind]


class FakeCloud(pulumi.runtime.Mocks):
    """Test double for the engine and the aws, tls, random, command and kubernetes providers."""

    def __init__(self) -> None:
        self.resources: list[Declared] = []
        self.invokes: list[tuple[str, dict[str, Any]]] = []
        self._counter = itertools.count(1)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs, secret = {}, set()
        for key, value in args.inputs.items():
            plain, is_secret = unwrap(value)
            inputs[key] = plain
            if is_secret:
                secret.add(key)
        self.resources.append(Declared(args.typ, args.name, inputs, frozenset(secret)))
        number = next(self._counter)
        state = dict(args.inputs)
        state.update(self._outputs(args.typ, args.name, number))
        resource_id = f"vol-{number:017x}" if args.typ == "aws:ebs/volume:Volume" else f"{args.name}-id"
        return resource_id, state

    def _outputs(self, token: str, name: str, number: int) -> dict[str, Any]:
        if token == "aws:ec2/instance:Instance":
            return {"privateIp": f"10.20.0.{10 + number % 200}", "publicIp": f"198.51.100.{number % 250}"}
        if token == "aws:ec2/eip:Eip":
            return {"publicIp": f"203.0.113.{number % 250}"}
        if token == "aws:ec2/keyPair:KeyPair":
            return {"keyName": name}
        if token == "tls:index/privateKey:PrivateKey":
            return {
                "privateKeyOpenssh": "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n",
                "publicKeyOpenssh": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFake mlstack",
            }
        if token == "random:index/randomPassword:RandomPassword":
            return {"result": f"fake-password-{number}"}
        if token == "command:local:Command":
            return {"stdout": FAKE_KUBECONFIG, "stderr": ""}
        return {}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.invokes.append((args.token, dict(args.args)))
        if args.token == "aws:ec2/getAmi:getAmi":
            return {
                "id": "ami-0123456789abcdef0",
                "imageId": "ami-0123456789abcdef0",
                "name": "AlmaLinux OS 9.6.20250522 x86_64",
            }, []
        raise AssertionError(f"the program made an invoke the tests do not expect: {args.token}")


def unwrap(value: Any) -> tuple[Any, bool]:
    """A deserialized input without secret markers (and whole floats as ints), and whether it was secret."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == _SECRET_MARK:
            return unwrap(value["value"])[0], True
        items = {key: unwrap(item) for key, item in value.items()}
        return {key: plain for key, (plain, _) in items.items()}, any(secret for _, secret in items.values())
    if isinstance(value, list):
        items = [unwrap(item) for item in value]
        return [plain for plain, _ in items], any(secret for _, secret in items)
    if isinstance(value, float) and value.is_integer():
        return int(value), False
    return value, False


def stack_file(stack: str | pathlib.Path) -> pathlib.Path:
    """``Pulumi.<stack>.yaml`` at the root for a stack name; a path is a stack file anywhere."""
    return stack if isinstance(stack, pathlib.Path) else ROOT / f"Pulumi.{stack}.yaml"


def stack_name(stack: str | pathlib.Path) -> str:
    return stack.stem.removeprefix("Pulumi.") if isinstance(stack, pathlib.Path) else stack


def stack_settings(stack: str | pathlib.Path) -> dict[str, Any]:
    """The config the Pulumi CLI would pass: Pulumi.yaml defaults, overridden by the stack's file."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    values = {
        f"{project['name']}:{key}": declaration["default"]
        for key, declaration in project.get("config", {}).items()
        if "default" in declaration
    }
    values.update(yaml.safe_load(stack_file(stack).read_text())["config"])
    return values


def _encode(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def run_program(
    stack: str | pathlib.Path,
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> tuple[ProgramRun | None, BaseException | None, FakeCloud]:
    """Runs the program for ``stack`` (plus overridden settings); returns what it declared or raised."""
    values = {**stack_settings(stack), **(overrides or {})}
    values = {key: value for key, value in values.items() if value is not None}
    values.update(secrets or {})
    fake = FakeCloud()
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(fake, project="mlstack", stack=stack_name(stack), preview=False)
    pulumi.runtime.set_all_config({key: _encode(value) for key, value in values.items()}, list(secrets or {}))
    exports: dict[str, tuple[Any, bool]] = {}

    def program():
        runpy.run_path(str(PROGRAM), run_name="__main__")

        async def collect() -> None:
            for name, value in settings.get_root_resource().outputs.items():
                output = pulumi.Output.from_input(value)
                exports[name] = (unwrap(await output.future())[0], await output.is_secret())

        return collect()

    try:
        _sync_await(run_pulumi_func(program))
    except Exception as error:
        return None, error, fake
    return ProgramRun(stack_name(stack), list(fake.resources), exports, list(fake.invokes)), None, fake
