"""fake_nvidia_tools: TEST DOUBLES of `nvidia-smi` and `modinfo` for the nvidia_gpu role's health check.

`python fake_nvidia_tools.py <nvidia-smi|modinfo> <arguments>` acts as that tool (the tests put a wrapper of
each name first on PATH) on a simulated GPU host described by the JSON file in $FAKE_NVIDIA_STATE:

    {"module_version": "580.95.05",          # what `modinfo -F version nvidia` prints; null: no module
     "gpus": [{"index": 0, "pci.bus_id": "00000000:17:00.0", "name": "NVIDIA H200",
               "driver_version": "580.95.05", "memory.total": "143771 MiB",
               "mig.mode.current": "Disabled", "mig.mode.pending": "Disabled"}],
     "calls": []}                             # every command line, appended by each call

It answers only the commands the role runs: `nvidia-smi --query-gpu=<fields> --format=csv,noheader`,
`nvidia-smi -i <index> -mig 1` and `modinfo -F version nvidia`; anything else exits 2, naming itself.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys


def nvidia_smi(state: dict, args: list[str]) -> int:
    if len(args) == 2 and args[0].startswith("--query-gpu=") and args[1] == "--format=csv,noheader":
        fields = args[0].removeprefix("--query-gpu=").split(",")
        for gpu in state["gpus"]:
            print(", ".join(str(gpu[field]) for field in fields))
        return 0
    if len(args) == 4 and args[0] == "-i" and args[2] == "-mig" and args[3] in ("0", "1"):
        gpu = next((g for g in state["gpus"] if str(g["index"]) == args[1]), None)
        if gpu is None:
            print(f"No devices were found matching the index {args[1]}", file=sys.stderr)
            return 6
        if gpu["mig.mode.current"] == "[N/A]":
            print(f"Unable to enable MIG Mode for GPU {gpu['pci.bus_id']}: Not Supported", file=sys.stderr)
            return 3
        gpu["mig.mode.pending"] = "Enabled" if args[3] == "1" else "Disabled"
        print(f"{gpu['mig.mode.pending']} MIG Mode for GPU {gpu['pci.bus_id']}")
        return 0
    return unknown("nvidia-smi", args)


def modinfo(state: dict, args: list[str]) -> int:
    if args != ["-F", "version", "nvidia"]:
        return unknown("modinfo", args)
    if state.get("module_version") is None:
        print("modinfo: ERROR: Module nvidia not found.", file=sys.stderr)
        return 1
    print(state["module_version"])
    return 0


def unknown(tool: str, args: list[str]) -> int:
    print(f"fake_nvidia_tools ({tool}): the test double does not answer {args}", file=sys.stderr)
    return 2


def main() -> int:
    path = pathlib.Path(os.environ["FAKE_NVIDIA_STATE"])
    state = json.loads(path.read_text())
    tool, args = sys.argv[1], sys.argv[2:]
    state.setdefault("calls", []).append([tool, *args])
    code = {"nvidia-smi": nvidia_smi, "modinfo": modinfo}.get(tool, lambda _s, a: unknown(tool, a))(
        state, args
    )
    path.write_text(json.dumps(state, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
