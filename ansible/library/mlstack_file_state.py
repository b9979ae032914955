#!/usr/bin/python
"""Compare many paths with the state the roles want, in one module run (read-only)."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mlstack_file_state
short_description: Tell which of many files, directories and links differ from the wanted state
description:
  - Looks at every listed path in one module run and returns those that are not yet as wanted:
    missing, of another type, another owner, group or mode, other content (SHA-256) or another link target.
  - The roles call it once per phase and skip the template, copy and file tasks of the paths that are
    already right. Each of those tasks costs several remote commands even when it changes nothing;
    this probe costs one. It changes nothing and runs in check mode.
options:
  files:
    description: The paths and their wanted state.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description: What the path must be.
        type: str
        choices: [file, directory, link]
        default: file
      sha256:
        description: Wanted content of a file, as a SHA-256 hex digest (not compared when empty).
        type: str
        default: ""
      mode:
        description: Wanted permission bits, octal as a string ("0644"; not compared when empty).
        type: str
        default: ""
      owner:
        description: Wanted owner name (not compared when empty).
        type: str
        default: ""
      group:
        description: Wanted group name (not compared when empty).
        type: str
        default: ""
      src:
        description: Wanted target of a link.
        type: str
        default: ""
"""

RETURN = r"""
matching:
  description:
    - The paths already in the wanted state, in the order given. Tasks skip a path only when it is listed
      here, so a path the probe did not look at is always written.
  type: list
  elements: str
  returned: always
differ:
  description: The paths that are not in the wanted state, in the order given.
  type: list
  elements: str
  returned: always
reasons:
  description: For each path in O(differ), what differs (for example V(missing), V(mode 0600)).
  type: dict
  returned: always
"""

TYPES = {"file": stat.S_ISREG, "directory": stat.S_ISDIR, "link": stat.S_ISLNK}


def name_of(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def difference(want: dict) -> str:
    """What differs between the path and its wanted state; empty when nothing does."""
    path = want["path"]
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    if not TYPES[want["state"]](current.st_mode):
        return f"not a {want['state']}"
    if want["state"] == "link":
        return "" if os.readlink(path) == want["src"] else f"link to {os.readlink(path)}"
    mode = stat.S_IMODE(current.st_mode)
    if want["mode"] and int(want["mode"], 8) != mode:
        return f"mode {mode:04o}"
    for key, number, lookup in (
        ("owner", current.st_uid, pwd.getpwuid),
        ("group", current.st_gid, grp.getgrgid),
    ):
        if want[key] and want[key] != name_of(lookup, number):
            return f"{key} {name_of(lookup, number)}"
    if want["state"] == "file" and want["sha256"] and sha256_of(path) != want["sha256"].lower():
        return "content"
    return ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "state": {"type": "str", "choices": ["file", "directory", "link"], "default": "file"},
                    # The digest of a token file would let a weak token be guessed from the logs.
                    "sha256": {"type": "str", "default": "", "no_log": True},
                    "mode": {"type": "str", "default": ""},
                    "owner": {"type": "str", "default": ""},
                    "group": {"type": "str", "default": ""},
                    "src": {"type": "str", "default": ""},
                },
            }
        },
        supports_check_mode=True,
    )
    matching, reasons = [], {}
    for want in module.params["files"]:
        reason = difference(want)
        if reason:
            reasons[want["path"]] = reason
        else:
            matching.append(want["path"])
    module.exit_json(changed=False, matching=matching, differ=list(reasons), reasons=reasons)


if __name__ == "__main__":
    main()
