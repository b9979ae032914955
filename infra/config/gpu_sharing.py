"""The ``gpuSharing`` setting: how the NVIDIA device plugin shares each GPU."""

from __future__ import annotations

from infra.config.fields import Fields
from infra.config.settings import GpuSharing


def read_gpu_sharing(top: Fields) -> GpuSharing:
    if not top.has("gpuSharing"):
        top.skip("gpuSharing")
        return GpuSharing()
    obj = top.obj("gpuSharing")
    sharing = GpuSharing(
        strategy=obj.string("strategy", GpuSharing.strategy, allowed=("none", "time-slicing")),
        replicas=obj.integer("replicas", GpuSharing.replicas, minimum=1),
        mig_strategy=obj.string("migStrategy", GpuSharing.mig_strategy, allowed=("none", "single", "mixed")),
    )
    if sharing.strategy == "time-slicing" and sharing.replicas < 2:
        raise obj.fail(
            "replicas", "time-slicing shares each GPU between 2 or more pods; set replicas to 2 or more"
        )
    if sharing.strategy == "none" and sharing.replicas != 1:
        raise obj.fail("replicas", "only applies to strategy 'time-slicing'")
    obj.done()
    return sharing
