"""A throwaway Kubernetes control plane for the tests: etcd and kube-apiserver, built by `make
control-plane` (tools/control-plane/), on loopback with certificates generated per run.

The API server runs as a cluster's does where it matters to what the program declares: client
certificates signed by the cluster's CA, service-account tokens signed by their own key, RBAC as the only
authorizer, and the default admission chain, in which Pod Security admission enforces, audits and warns at
the levels each namespace's labels declare. There is no kubelet, scheduler or controller manager: objects
are stored and admitted, nothing runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import ipaddress
import os
import pathlib
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import daemons, kube_client

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARIES = ROOT / "build" / "control-plane"
CRDS = ROOT / "build" / "crds"
LOOPBACK = "127.0.0.1"
# k3s's service range, so Services keep the cluster IPs they would get there.
SERVICE_CIDR = "10.43.0.0/16"
READY_TIMEOUT_S = 120
CRD_TIMEOUT_S = 60
_LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or did not become ready; the message says why."""


def _free_ports(count: int) -> list[int]:
    """Distinct TCP ports on loopback that were free a moment ago (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


def _make(target: str, directory: pathlib.Path) -> None:
    """`make <target>` (nothing to do when its output is newer than its sources), one process at a time."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    with (directory / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            ["make", "--no-print-directory", "-s", target],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
        raise ControlPlaneError(f"`make {target}` failed (exit {result.returncode}):\n{tail}")


def build() -> pathlib.Path:
    """The directory that holds ``etcd`` and ``kube-apiserver``, built first where they are not current."""
    _make("control-plane", BINARIES)
    return BINARIES


class _CrdLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.1 reads a bare `=` (an enum value in the schemas) as its `value` tag: here it is the string."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", _CrdLoader.construct_yaml_str)
# controller-gen writes one CRD per file, `spec.group` and `spec.names.kind` at these indentations.
_CRD_GROUP = re.compile(r"^  group: (\S+)$", re.M)
_CRD_KIND = re.compile(r"^    kind: (\S+)$", re.M)


def crds(kinds: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """The CRDs `make crds` generates (controller-gen, from the projects' Go API types) for ``kinds``
    ((group, kind) pairs). Only those are parsed: Argo's full schemas run to megabytes."""
    _make("crds", CRDS)
    found = []
    for path in sorted(CRDS.glob("*.yaml")):
        text = path.read_text()
        group, kind = _CRD_GROUP.search(text), _CRD_KIND.search(text)
        if group and kind and (group[1], kind[1]) in kinds:
            found.append(yaml.load(text, Loader=_CrdLoader))
    return found


def _established(crd: dict[str, Any] | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def install_crds(api: kube_client.Client, kinds: set[tuple[str, str]]) -> None:
    """Creates the generated CRD of each kind in ``kinds`` and waits until the server serves it."""
    wanted = crds(kinds)
    custom = {(group, kind) for group, kind in kinds if "." in group and not group.endswith(".k8s.io")}
    missing = custom - {(crd["spec"]["group"], crd["spec"]["names"]["kind"]) for crd in wanted}
    if missing:
        raise ControlPlaneError(f"no generated CRD for {sorted(missing)}: add its API package to tools/crds/")
    for crd in wanted:
        verdict = api.create(crd)
        if not (verdict.accepted or verdict.status == 409):
            raise ControlPlaneError(f"CRD {crd['metadata']['name']}: {verdict}")
    deadline = time.monotonic() + CRD_TIMEOUT_S
    pending = list(wanted)
    while pending:
        pending = [crd for crd in pending if not _established(api.get(crd))]
        if pending and time.monotonic() > deadline:
            names = [crd["metadata"]["name"] for crd in pending]
            raise ControlPlaneError(f"CRDs not established after {CRD_TIMEOUT_S} s: {names}")
        time.sleep(0.2)
    api.forget_discovery()


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A client certificate and its key, as files (what requests and kubectl take)."""

    cert: pathlib.Path
    key: pathlib.Path


class _Authority:
    """The cluster's CA: issues the serving and client certificates of one run, valid for a day."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlstack-test-ca")])
        self.cert_file = directory / "ca.crt"
        cert = (
            self._builder(self._name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def issue(self, name: str, common_name: str, organizations: tuple[str, ...] = ()) -> Credentials:
        """A certificate for loopback that serves and authenticates: the API server reads the user from the
        common name and the groups from the organizations."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        subject = x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = (
            self._builder(subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        credentials = Credentials(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        credentials.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(credentials.key, key)
        return credentials


def _write_key(path: pathlib.Path, key) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def _service_account_keys(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The key pair that signs and verifies service-account tokens (RSA: what the API server's
    issuer discovery advertises by default)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "sa.key", directory / "sa.pub"
    _write_key(private, key)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@dataclasses.dataclass(frozen=True)
class ControlPlane:
    """A running control plane: where to reach it and as whom (``admin`` is in system:masters)."""

    url: str
    ca: pathlib.Path
    admin: Credentials
    apiserver_log: pathlib.Path
    etcd_log: pathlib.Path
    pids: tuple[int, int]
    """etcd's and kube-apiserver's process ids, for measuring them."""

    def session(self) -> requests.Session:
        session = requests.Session()
        # Not the environment's CA bundle (REQUESTS_CA_BUNDLE would override `verify`) or proxies.
        session.trust_env = False
        session.verify = str(self.ca)
        session.cert = (str(self.admin.cert), str(self.admin.key))
        return session


def _etcd_argv(
    binaries: pathlib.Path, work: pathlib.Path, ports: tuple[int, int], tls: Credentials, ca
) -> list:
    client, peer = (f"https://{LOOPBACK}:{ports[0]}", f"http://{LOOPBACK}:{ports[1]}")
    return [
        binaries / "etcd",
        f"--data-dir={work / 'etcd'}",
        "--name=default",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        f"--cert-file={tls.cert}",
        f"--key-file={tls.key}",
        f"--trusted-ca-file={ca}",
        "--client-cert-auth",
        # A test cluster's data need not survive a power cut; fsync on a shared disk costs seconds.
        "--unsafe-no-fsync",
        # Argo's CRDs with their full schemas are over etcd's default 1.5 MiB per request.
        "--max-request-bytes=10485760",
        "--log-level=warn",
    ]


def _apiserver_argv(binaries, work, ports, etcd_port, tls: Credentials, etcd_client: Credentials, ca) -> list:
    signing_key, verifying_key = _service_account_keys(work)
    return [
        binaries / "kube-apiserver",
        f"--etcd-servers=https://{LOOPBACK}:{etcd_port}",
        f"--etcd-cafile={ca}",
        f"--etcd-certfile={etcd_client.cert}",
        f"--etcd-keyfile={etcd_client.key}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports[0]}",
        f"--tls-cert-file={tls.cert}",
        f"--tls-private-key-file={tls.key}",
        f"--client-ca-file={ca}",
        f"--cert-dir={work / 'apiserver-certs'}",
        "--anonymous-auth=false",
        "--authorization-mode=RBAC",
        f"--service-account-key-file={verifying_key}",
        f"--service-account-signing-key-file={signing_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # As k3s: the device plugin and DCGM exporter run privileged where their namespace allows it.
        "--allow-privileged=true",
        # The default admission chain (PodSecurity, ServiceAccount, LimitRanger, ResourceQuota, Priority,
        # RuntimeClass, ...) stays on. The endpoint reconciler would publish the loopback address as the
        # kubernetes Service's endpoint, which validation refuses.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        "--v=1",
    ]


def _tail(path: pathlib.Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else ["(no log)"]
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def wait_ready(
    plane: ControlPlane, processes: list[subprocess.Popen], timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Until /readyz answers ok (every post-start hook done: the bootstrap RBAC roles exist); a process
    that exits or a deadline that passes raises with the log tail of the API server and etcd."""
    deadline = time.monotonic() + timeout_s
    with plane.session() as session:
        while True:
            dead = [p for p in processes if p.poll() is not None]
            if dead:
                raise ControlPlaneError(
                    f"{_name(dead[0])} exited ({dead[0].returncode}) before ready\n{_logs(plane)}"
                )
            try:
                if session.get(f"{plane.url}/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{plane.url}/readyz not ok after {timeout_s:.0f} s\n{_logs(plane)}")
            time.sleep(0.2)


def _name(process: subprocess.Popen) -> str:
    return pathlib.Path(process.args[process.args.index("--") + 1]).name


def _logs(plane: ControlPlane) -> str:
    return f"kube-apiserver log tail:\n{_tail(plane.apiserver_log)}\netcd log tail:\n{_tail(plane.etcd_log)}"


@contextlib.contextmanager
def running(work: pathlib.Path, binaries: pathlib.Path | None = None) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver in ``work``, ready; both stopped on the way out, whatever happened."""
    binaries = binaries or build()
    authority = _Authority(work)
    etcd_port, peer_port, api_port = _free_ports(3)
    plane = ControlPlane(
        url=f"https://{LOOPBACK}:{api_port}",
        ca=authority.cert_file,
        admin=authority.issue("admin", "mlstack-test-admin", ("system:masters",)),
        apiserver_log=work / "kube-apiserver.log",
        etcd_log=work / "etcd.log",
        pids=(0, 0),
    )
    processes: list[subprocess.Popen] = []
    try:
        etcd_tls = authority.issue("etcd", "etcd")
        argv = _etcd_argv(binaries, work, (etcd_port, peer_port), etcd_tls, authority.cert_file)
        processes.append(daemons.launch(argv, os.environ, plane.etcd_log))
        apiserver_tls = authority.issue("apiserver", "kube-apiserver")
        etcd_client = authority.issue("apiserver-etcd-client", "kube-apiserver-etcd-client")
        argv = _apiserver_argv(
            binaries, work, (api_port,), etcd_port, apiserver_tls, etcd_client, authority.cert_file
        )
        processes.append(daemons.launch(argv, os.environ, plane.apiserver_log))
        plane = dataclasses.replace(plane, pids=(processes[0].pid, processes[1].pid))
        wait_ready(plane, processes)
        yield plane
    finally:
        for process in reversed(processes):
            daemons.stop(process, timeout_s=20)
