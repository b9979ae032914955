"""``mlstack:sshKnownHosts``: the nodes' SSH host keys, pinned in the stack, in OpenSSH's known_hosts format.

Set, Ansible connects with ``StrictHostKeyChecking=yes`` against these keys only (``infra/run_ansible.sh``);
empty, a host's key is accepted on first contact. A malformed line would make every connection fail with
ssh's "Host key verification failed", far from its cause, so each line is checked here: ``[marker]
host[,host] keytype base64key [comment]``, the key decoding to an SSH public key of that type.
"""

from __future__ import annotations

import base64
import binascii
import re

# The key types OpenSSH accepts as host keys (ssh-dss is disabled in current releases).
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_MARKERS = ("@cert-authority", "@revoked")
# Plain names and addresses, [host]:port, wildcards and negations, or a hashed entry |1|salt|hash.
_HOST = re.compile(r"^(\|1\|[A-Za-z0-9+/=]+\|[A-Za-z0-9+/=]+|!?[A-Za-z0-9_.:*?\[\]%-]+)$")
FORMAT = "each line is 'host[,host] keytype base64key', as `ssh-keyscan <host>` prints it"


def check_known_hosts(text: str) -> str | None:
    """What is wrong with the first bad line of ``text`` (blank lines and ``#`` comments are skipped)."""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            problem = _line_problem(stripped.split())
            if problem:
                return f"line {number}: {problem}; {FORMAT}"
    return None


def _line_problem(fields: list[str]) -> str | None:
    if fields[0] in _MARKERS:
        fields = fields[1:]
    if len(fields) < 3:
        return f"{len(fields)} fields where host, key type and key are needed"
    hosts, key_type, key = fields[:3]
    bad_hosts = [host for host in hosts.split(",") if not _HOST.match(host)]
    if bad_hosts:
        return f"{bad_hosts[0]!r} is not a host name, address or pattern"
    if key_type not in KEY_TYPES:
        return f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}"
    if _embedded_type(key) != key_type:
        return f"the key is not the base64 of a {key_type} public key"
    return None


def _embedded_type(key: str) -> str | None:
    """The key type an SSH public key blob starts with (a length-prefixed string), or None."""
    try:
        blob = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return None
    length = int.from_bytes(blob[:4], "big")
    if len(blob) < 4 + length:
        return None
    return blob[4 : 4 + length].decode("ascii", errors="replace")
