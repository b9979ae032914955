"""Filters of the nvidia_gpu role."""

from __future__ import annotations

import base64
import re

# /proc/driver/nvidia/version starts with, e.g.,
#   NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  (...)
#   NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024
LOADED_VERSION = re.compile(r"^NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)(?:\s|$)", re.M)


def nvidia_gpu_loaded_version(slurped: dict) -> str:
    """The driver version in a slurp result of /proc/driver/nvidia/version; "" when none is loaded."""
    if not isinstance(slurped, dict) or slurped.get("failed") or "content" not in slurped:
        return ""
    match = LOADED_VERSION.search(base64.b64decode(slurped["content"]).decode(errors="replace"))
    return match.group(1) if match else ""


class FilterModule:
    def filters(self):
        return {"nvidia_gpu_loaded_version": nvidia_gpu_loaded_version}
