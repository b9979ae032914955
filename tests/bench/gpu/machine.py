"""What the measurements ran on: the GPU as the driver and PyTorch see it, the CPU, the versions."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from typing import Any

from tests.bench.run import machine as host

NVIDIA_SMI_QUERY = "name,driver_version,memory.total,clocks.max.sm,power.limit"


def gpu_absent_reason() -> str | None:
    """Why PyTorch sees no GPU here, or None when it sees one."""
    import torch

    if torch.cuda.is_available():
        return None
    return (
        f"PyTorch {torch.__version__} sees no GPU (torch.cuda.is_available() is False): run this on the "
        "GPU machine, or pass --cpu-check for the rehearsal on the CPU"
    )


def facts() -> dict[str, Any]:
    """The device, driver and library versions for the report (PyTorch imported here, after the wheels)."""
    import torch

    gpu = torch.cuda.is_available()
    return {
        "host": host(),
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
        "gpu_count": torch.cuda.device_count() if gpu else 0,
        "bf16_supported": bool(gpu and torch.cuda.is_bf16_supported(including_emulation=False)),
        "nvidia_smi": nvidia_smi("--query-gpu=" + NVIDIA_SMI_QUERY, "--format=csv"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "keras": importlib.metadata.version("keras"),
    }


def nvidia_smi(*args: str) -> str | None:
    """``nvidia-smi ARGS``'s output, or None where there is no nvidia-smi (or it fails)."""
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=60, check=False)
    return result.stdout.strip() if result.returncode == 0 else None
