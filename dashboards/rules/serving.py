"""Serving alerts on TF Serving's own metrics and the serving HPA (kube-state-metrics).

TF Serving's ``:tensorflow:serving:request_latency`` histogram is in **microseconds**; the recorded
quantiles divide by 1e6, so every rule and threshold here is in seconds.
"""

from __future__ import annotations

from dashboards.expr import sum_rate
from dashboards.params import THRESHOLDS, Thresholds
from dashboards.rules.model import Alert, Recording, RuleGroup, promql
from dashboards.selectors import SERVING_NAMESPACE
from dashboards.tf_serving import REQUEST_COUNT, REQUEST_LATENCY

BY_STATUS = "model_name_status:tensorflow_serving_request_count:rate5m"
TOTAL = "model_name:tensorflow_serving_request_count:rate5m"
ERROR_RATIO = "model_name:tensorflow_serving_request_errors:ratio_rate5m"
BUCKETS = "model_name_le:tensorflow_serving_request_latency_bucket:rate5m"
LATENCY = "model_name:tensorflow_serving_request_latency_seconds:histogram_quantile"


def group(t: Thresholds = THRESHOLDS) -> RuleGroup:
    """The group at thresholds ``t`` (the integration test evaluates alerts at other thresholds live)."""
    return RuleGroup(
        name="mlstack-serving",
        recordings=_recordings(),
        alerts=(*_tf_serving_alerts(t), _hpa_pinned_at_max(t)),
    )


def _recordings() -> tuple[Recording, ...]:
    """Request rates by status and in total, the error ratio, and p50/p99 latency in seconds, per model."""
    # TF Serving's microseconds (dashboards.tf_serving.MICROSECONDS) written as PromQL writes them.
    quantiles = tuple(
        Recording(LATENCY, f"histogram_quantile({q}, {BUCKETS}) / 1e6", labels={"quantile": q})
        for q in ("0.5", "0.99")
    )
    return (
        Recording(BY_STATUS, sum_rate(REQUEST_COUNT, labels=["model_name", "status"], window="5m")),
        Recording(TOTAL, f"sum by (model_name) ({BY_STATUS})"),
        Recording(
            ERROR_RATIO,
            promql(f"""
                (
                  sum by (model_name) ({BY_STATUS}{{status!="OK"}})
                  or
                  {TOTAL} * 0
                )
                /
                {TOTAL}
            """),
        ),
        Recording(BUCKETS, sum_rate(f"{REQUEST_LATENCY}_bucket", labels=["model_name", "le"], window="5m")),
        *quantiles,
    )


def _tf_serving_alerts(t: Thresholds) -> tuple[Alert, ...]:
    return (
        Alert(
            "ServingLatencyP99OverBudget",
            f'{LATENCY}{{quantile="0.99"}} > {t.serving_p99_latency_budget_seconds:g}',
            for_=t.serving_latency_for,
            severity="warning",
            summary="Serving p99 latency is over budget.",
            description=(
                "Model {{ $labels.model_name }} answers 1% of requests slower than "
                "{{ $value | humanizeDuration }}, over the budget of "
                f"{t.serving_p99_latency_budget_seconds:g}s."
            ),
        ),
        Alert(
            "ServingErrorRateHigh",
            promql(f"""
                {ERROR_RATIO} > {t.serving_error_ratio:g}
                and on (model_name)
                {TOTAL} >= {t.serving_error_min_requests_per_second:g}
            """),
            for_=t.serving_error_for,
            severity="critical",
            summary="Many serving requests fail.",
            description=(
                "{{ $value | humanizePercentage }} of requests to model {{ $labels.model_name }} "
                f"end with an error status (limit {t.serving_error_ratio:g})."
            ),
        ),
    )


def _hpa_pinned_at_max(t: Thresholds) -> Alert:
    hpa, match = SERVING_NAMESPACE, "on (namespace, horizontalpodautoscaler)"
    return Alert(
        "ServingHpaPinnedAtMax",
        promql(f"""
            kube_horizontalpodautoscaler_status_current_replicas{hpa}
              >= {match}
            kube_horizontalpodautoscaler_spec_max_replicas{hpa}
            and {match}
            (
              kube_horizontalpodautoscaler_spec_max_replicas{hpa}
                > {match}
              kube_horizontalpodautoscaler_spec_min_replicas{hpa}
            )
        """),
        for_=t.hpa_pinned_for,
        severity="warning",
        summary="A serving autoscaler has no room left.",
        description=(
            "HPA {{ $labels.namespace }}/{{ $labels.horizontalpodautoscaler }} has run at its maximum "
            f"of {{{{ $value }}}} replicas for {t.hpa_pinned_for}; more load will raise latency."
        ),
    )
