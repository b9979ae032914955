"""GPU alerts on DCGM exporter metrics: XID errors, temperature, and GPUs that training pods hold but do not use.

DCGM exporter labels each GPU series with ``gpu``, ``UUID``, ``Hostname`` and ``modelName``, and with
the ``namespace``/``pod``/``container`` that holds the GPU (its Kubernetes pod mapping; see the
"Exporter metrics the dashboards rely on" section of docs/interfaces.md).
"""

from __future__ import annotations

from dashboards.params import THRESHOLDS, Thresholds
from dashboards.rules.model import Alert, Recording, RuleGroup, promql
from dashboards.selectors import TRAINING_NAMESPACE

GPU = "GPU {{ $labels.gpu }} ({{ $labels.modelName }}, {{ $labels.UUID }}) on {{ $labels.Hostname }}"


def group(t: Thresholds = THRESHOLDS) -> RuleGroup:
    """The group at thresholds ``t`` (the integration test evaluates alerts at other thresholds live)."""
    pod_utilisation = f"namespace_pod:DCGM_FI_DEV_GPU_UTIL:avg{t.gpu_idle_window}"
    return RuleGroup(
        name="mlstack-gpu",
        recordings=(
            Recording(
                pod_utilisation,
                promql(f"""
                    avg by (namespace, pod) (
                      avg_over_time(DCGM_FI_DEV_GPU_UTIL{{pod!=""}}[{t.gpu_idle_window}])
                    )
                """),
            ),
        ),
        alerts=(
            Alert(
                "GpuXidErrors",
                "DCGM_FI_DEV_XID_ERRORS != 0",
                for_=t.gpu_xid_for,
                severity="warning",
                summary="A GPU reported an XID error.",
                description=f"{GPU} reported XID error {{{{ $value }}}}.",
            ),
            Alert(
                "GpuTooHot",
                f"DCGM_FI_DEV_GPU_TEMP > {t.gpu_temperature_celsius:g}",
                for_=t.gpu_temperature_for,
                severity="warning",
                summary="A GPU runs hotter than its threshold.",
                description=f"{GPU} is at {{{{ $value }}}} C, above {t.gpu_temperature_celsius:g} C.",
            ),
            Alert(
                "GpuIdleWhileTraining",
                f"{pod_utilisation}{TRAINING_NAMESPACE} < {t.gpu_idle_utilisation_percent:g}",
                for_=t.gpu_idle_for,
                severity="warning",
                summary="A training pod holds GPUs it barely uses.",
                description=(
                    "Training pod {{ $labels.namespace }}/{{ $labels.pod }} used its GPUs "
                    f'{{{{ $value | printf "%.1f" }}}}% on average over {t.gpu_idle_window}, '
                    f"below {t.gpu_idle_utilisation_percent:g}%."
                ),
            ),
        ),
    )
