"""GPU and nodes: DCGM exporter's per-GPU health and node_exporter's CPU, memory, disk and network."""

from __future__ import annotations

from dashboards.expr import RATE_INTERVAL, sum_rate
from dashboards.panels import Board, Graph, Query, Row
from dashboards.selectors import NODE_EXPORTER

UID = "mlstack-gpu-nodes"
GPU_LEGEND = "{{Hostname}} GPU {{gpu}}"
NODES = f"{{{NODE_EXPORTER}}}"
FILESYSTEMS = (
    f'{{{NODE_EXPORTER}, fstype!~"tmpfs|overlay|squashfs|nsfs", mountpoint!~"/run.*|/var/lib/kubelet/.*"}}'
)
INTERFACES = f'{{{NODE_EXPORTER}, device!="lo"}}'


def board() -> Board:
    return Board(
        uid=UID,
        title="mlstack / GPUs and nodes",
        description="Per-GPU health from the DCGM exporter and per-node resources from node_exporter.",
        rows=[_gpus(), Row("Nodes (node_exporter)", [*_node_utilisation(), *_node_throughput()])],
        tags=("mlstack", "gpu", "nodes"),
    )


def _gpus() -> Row:
    return Row(
        "GPUs (DCGM exporter)",
        [
            Graph(
                "GPU utilisation",
                "Fraction of time a kernel ran on the GPU (DCGM_FI_DEV_GPU_UTIL), per GPU.",
                [Query("DCGM_FI_DEV_GPU_UTIL", GPU_LEGEND)],
                unit="percent",
                min=0,
                max=100,
            ),
            Graph(
                "GPU memory used",
                "Framebuffer memory in use and in total (used + free), per GPU.",
                [
                    Query("DCGM_FI_DEV_FB_USED", GPU_LEGEND),
                    Query("DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE", GPU_LEGEND + " total"),
                ],
                unit="mbytes",
                min=0,
            ),
            Graph(
                "GPU temperature",
                "Core temperature; the GpuTooHot alert fires above its threshold (docs/runbooks.md).",
                [Query("DCGM_FI_DEV_GPU_TEMP", GPU_LEGEND)],
                unit="celsius",
                width=8,
            ),
            Graph(
                "GPU power draw",
                "Board power draw per GPU.",
                [Query("DCGM_FI_DEV_POWER_USAGE", GPU_LEGEND)],
                unit="watt",
                min=0,
                width=8,
            ),
            Graph(
                "Last XID error code",
                "Code of the last XID error each GPU reported (0 = none); see the GpuXidErrors runbook.",
                [Query("DCGM_FI_DEV_XID_ERRORS", GPU_LEGEND)],
                min=0,
                width=8,
            ),
        ],
    )


def _node_utilisation() -> list[Graph]:
    """Shares of CPU, memory and disk space in use (0-1)."""
    cpu_idle = f'rate(node_cpu_seconds_total{{{NODE_EXPORTER}, mode="idle"}}[{RATE_INTERVAL}])'
    return [
        Graph(
            "CPU utilisation",
            "Share of CPU time not idle, per node.",
            [Query(f"1 - avg by (instance) ({cpu_idle})", "{{instance}}")],
            unit="percentunit",
            min=0,
            max=1,
        ),
        Graph(
            "Memory utilisation",
            "Share of memory not available to new processes, per node.",
            [
                Query(
                    f"1 - node_memory_MemAvailable_bytes{NODES} / node_memory_MemTotal_bytes{NODES}",
                    "{{instance}}",
                )
            ],
            unit="percentunit",
            min=0,
            max=1,
        ),
        Graph(
            "Disk space used",
            "Share of each real filesystem in use.",
            [
                Query(
                    f"1 - node_filesystem_avail_bytes{FILESYSTEMS} / node_filesystem_size_bytes{FILESYSTEMS}",
                    "{{instance}} {{mountpoint}}",
                )
            ],
            unit="percentunit",
            min=0,
            max=1,
            width=8,
        ),
    ]


def _node_throughput() -> list[Graph]:
    """Bytes per second through the disks and the network interfaces."""

    def per_node(counter: str, selector: str, legend: str) -> Query:
        return Query(sum_rate(counter, selector, ["instance"]), f"{{{{instance}}}} {legend}")

    return [
        Graph(
            "Disk throughput",
            "Bytes read and written per second, per node.",
            [
                per_node("node_disk_read_bytes_total", NODES, "read"),
                per_node("node_disk_written_bytes_total", NODES, "written"),
            ],
            unit="Bps",
            width=8,
        ),
        Graph(
            "Network throughput",
            "Bytes received and sent per second on every interface but loopback, per node.",
            [
                per_node("node_network_receive_bytes_total", INTERFACES, "received"),
                per_node("node_network_transmit_bytes_total", INTERFACES, "sent"),
            ],
            unit="Bps",
            width=8,
        ),
    ]
