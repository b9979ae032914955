"""GPU and nodes: DCGM exporter's per-GPU health and node_exporter's CPU, memory, disk and network."""

from __future__ import annotations

from dashboards.expr import RATE_INTERVAL, sum_rate
from dashboards.panels import Board, Graph, Query, Row
from dashboards.params import DEPLOYMENT

GPU_LEGEND = "{{Hostname}} GPU {{gpu}}"


def board() -> Board:
    node = f'job="{DEPLOYMENT.node_exporter_job}"'
    filesystems = (
        f'{{{node}, fstype!~"tmpfs|overlay|squashfs|nsfs", mountpoint!~"/run.*|/var/lib/kubelet/.*"}}'
    )
    gpus = Row(
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
    nodes = Row(
        "Nodes (node_exporter)",
        [
            Graph(
                "CPU utilisation",
                "Share of CPU time not idle, per node.",
                [
                    Query(
                        f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{node}, mode="idle"}}[{RATE_INTERVAL}]))',
                        "{{instance}}",
                    )
                ],
                unit="percentunit",
                min=0,
                max=1,
            ),
            Graph(
                "Memory utilisation",
                "Share of memory not available to new processes, per node.",
                [
                    Query(
                        f"1 - node_memory_MemAvailable_bytes{{{node}}} / node_memory_MemTotal_bytes{{{node}}}",
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
                        f"1 - node_filesystem_avail_bytes{filesystems} / node_filesystem_size_bytes{filesystems}",
                        "{{instance}} {{mountpoint}}",
                    )
                ],
                unit="percentunit",
                min=0,
                max=1,
                width=8,
            ),
            Graph(
                "Disk throughput",
                "Bytes read and written per second, per node.",
                [
                    Query(
                        sum_rate("node_disk_read_bytes_total", f"{{{node}}}", ["instance"]),
                        "{{instance}} read",
                    ),
                    Query(
                        sum_rate("node_disk_written_bytes_total", f"{{{node}}}", ["instance"]),
                        "{{instance}} written",
                    ),
                ],
                unit="Bps",
                width=8,
            ),
            Graph(
                "Network throughput",
                "Bytes received and sent per second on every interface but loopback, per node.",
                [
                    Query(
                        sum_rate(
                            "node_network_receive_bytes_total", f'{{{node}, device!="lo"}}', ["instance"]
                        ),
                        "{{instance}} received",
                    ),
                    Query(
                        sum_rate(
                            "node_network_transmit_bytes_total", f'{{{node}, device!="lo"}}', ["instance"]
                        ),
                        "{{instance}} sent",
                    ),
                ],
                unit="Bps",
                width=8,
            ),
        ],
    )
    return Board(
        uid="mlstack-gpu-nodes",
        title="mlstack / GPUs and nodes",
        description="Per-GPU health from the DCGM exporter and per-node resources from node_exporter.",
        rows=[gpus, nodes],
        tags=("mlstack", "gpu", "nodes"),
    )
