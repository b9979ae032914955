"""Serving: TF Serving's request rate, latency and errors, the HPA's replicas, and the inference worker's batches.

TF Serving (and the development server) report latency in microseconds; every latency query here
divides by 1e6 and shows seconds.
"""

from __future__ import annotations

from dashboards.expr import mean, quantile, ratio_or_zero, sum_rate
from dashboards.panels import Board, Graph, Query, Row, Stat, Variable
from dashboards.params import THRESHOLDS
from dashboards.selectors import SERVING_NAMESPACE
from dashboards.tf_serving import MICROSECONDS, REQUEST_COUNT, REQUEST_LATENCY, RUNTIME_LATENCY

UID = "mlstack-serving"
MODEL = '{model_name=~"$model"}'
ERRORS = '{model_name=~"$model", status!="OK"}'


def board() -> Board:
    return Board(
        uid=UID,
        title="mlstack / Serving",
        description="TF Serving traffic, latency (reported in microseconds, shown in seconds) and errors; autoscaling; batching.",
        rows=[
            _overview(),
            _requests(),
            Row("Capacity and batching", [*_autoscaling(), *_inference_worker()]),
        ],
        variables=[Variable("model", "Model", f"label_values({REQUEST_COUNT}, model_name)")],
        tags=("mlstack", "serving"),
    )


def _overview() -> Row:
    return Row(
        "Overview",
        [
            Stat(
                "Requests/s",
                "Requests per second to the selected models.",
                Query(sum_rate(REQUEST_COUNT, MODEL)),
                "reqps",
            ),
            Stat(
                "Error ratio",
                "Share of requests that ended with a status other than OK.",
                Query(ratio_or_zero(sum_rate(REQUEST_COUNT, ERRORS), sum_rate(REQUEST_COUNT, MODEL))),
                unit="percentunit",
                thresholds=[(THRESHOLDS.serving_error_ratio, "red")],
            ),
            Stat(
                "p99 latency",
                "99th percentile request latency; red over the ServingLatencyP99OverBudget budget.",
                Query(quantile(0.99, REQUEST_LATENCY, MODEL, divide_by=MICROSECONDS)),
                unit="s",
                thresholds=[(THRESHOLDS.serving_p99_latency_budget_seconds, "red")],
            ),
            Stat(
                "Replicas",
                "Current replicas of the autoscaled serving Deployments.",
                Query(f"sum(kube_horizontalpodautoscaler_status_current_replicas{SERVING_NAMESPACE})"),
            ),
        ],
    )


def _per_model_p50_and_p99(histogram: str) -> list[Query]:
    """The median and 99th percentile of a TF Serving latency histogram per model, in seconds."""
    return [
        Query(
            quantile(q, histogram, MODEL, ["model_name"], divide_by=MICROSECONDS),
            f"{{{{model_name}}}} {name}",
        )
        for q, name in ((0.5, "p50"), (0.99, "p99"))
    ]


def _requests() -> Row:
    return Row(
        "Requests",
        [
            Graph(
                "Requests/s by status",
                "Request rate per model and TF Serving status code.",
                [
                    Query(
                        sum_rate(REQUEST_COUNT, MODEL, ["model_name", "status"]), "{{model_name}} {{status}}"
                    )
                ],
                unit="reqps",
                stacked=True,
            ),
            Graph(
                "Error ratio",
                "Share of each model's requests that did not end with status OK.",
                [
                    Query(
                        ratio_or_zero(
                            sum_rate(REQUEST_COUNT, ERRORS, ["model_name"]),
                            sum_rate(REQUEST_COUNT, MODEL, ["model_name"]),
                        ),
                        "{{model_name}}",
                    )
                ],
                unit="percentunit",
                min=0,
            ),
            Graph(
                "Request latency",
                "Median and 99th percentile request latency per model, against the p99 budget "
                "(log scale: latencies sit decades below the budget until they approach it).",
                [
                    *_per_model_p50_and_p99(REQUEST_LATENCY),
                    Query(f"vector({THRESHOLDS.serving_p99_latency_budget_seconds:g})", "p99 budget"),
                ],
                unit="s",
                log_scale=True,
            ),
            Graph(
                "Model run time",
                "Median and 99th percentile time the model itself ran per request (without queueing and I/O).",
                _per_model_p50_and_p99(RUNTIME_LATENCY),
                unit="s",
                min=0,
            ),
        ],
    )


def _per_autoscaler(series: str, legend: str) -> Query:
    """``kube_horizontalpodautoscaler_<series>`` of each HPA in the serving namespace."""
    return Query(
        f"kube_horizontalpodautoscaler_{series}{SERVING_NAMESPACE}",
        f"{{{{horizontalpodautoscaler}}}} {legend}",
    )


def _autoscaling() -> list[Graph]:
    return [
        Graph(
            "Replicas against the autoscaler",
            "Current and desired replicas of each HPA in the serving namespace, between its min and max.",
            [
                _per_autoscaler("status_current_replicas", "current"),
                _per_autoscaler("status_desired_replicas", "desired"),
                _per_autoscaler("spec_min_replicas", "min"),
                _per_autoscaler("spec_max_replicas", "max"),
            ],
            min=0,
        ),
        Graph(
            "Autoscaling metric against its target",
            "The metric each HPA scales on, and the target it holds it to.",
            [
                _per_autoscaler("status_target_metric", "{{metric_name}} current"),
                _per_autoscaler("spec_target_metric", "{{metric_name}} target"),
            ],
        ),
    ]


def _inference_worker() -> list[Graph]:
    return [
        Graph(
            "Inference worker batch size",
            "Requests per micro-batch the inference worker sends to the model server.",
            [
                Query(quantile(0.5, "mlstack_infer_batch_size"), "p50"),
                Query(quantile(0.95, "mlstack_infer_batch_size"), "p95"),
                Query(mean("mlstack_infer_batch_size"), "mean"),
            ],
            min=0,
        ),
        Graph(
            "Inference worker round trip",
            "Model server round trip per micro-batch, as the inference worker sees it.",
            [
                Query(quantile(0.5, "mlstack_infer_request_duration_seconds"), "p50"),
                Query(quantile(0.99, "mlstack_infer_request_duration_seconds"), "p99"),
            ],
            unit="s",
            min=0,
        ),
    ]
