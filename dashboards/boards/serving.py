"""Serving: TF Serving's request rate, latency and errors, the HPA's replicas, and the inference worker's batches.

TF Serving (and the development server) report latency in microseconds; every latency query here
divides by 1e6 and shows seconds.
"""

from __future__ import annotations

from dashboards.expr import mean, quantile, ratio_or_zero, sum_rate
from dashboards.panels import Board, Graph, Query, Row, Stat, Variable
from dashboards.params import DEPLOYMENT, THRESHOLDS

MODEL = '{model_name=~"$model"}'
ERRORS = '{model_name=~"$model", status!="OK"}'
REQUESTS = ":tensorflow:serving:request_count"
LATENCY = ":tensorflow:serving:request_latency"
RUNTIME = ":tensorflow:serving:runtime_latency"
MICROSECONDS = 1e6


def board() -> Board:
    hpa = f'{{namespace="{DEPLOYMENT.serving_namespace}"}}'
    replicas_legend = "{{horizontalpodautoscaler}}"
    overview = Row(
        "Overview",
        [
            Stat(
                "Requests/s",
                "Requests per second to the selected models.",
                Query(sum_rate(REQUESTS, MODEL)),
                "reqps",
            ),
            Stat(
                "Error ratio",
                "Share of requests that ended with a status other than OK.",
                Query(ratio_or_zero(sum_rate(REQUESTS, ERRORS), sum_rate(REQUESTS, MODEL))),
                unit="percentunit",
                thresholds=[(THRESHOLDS.serving_error_ratio, "red")],
            ),
            Stat(
                "p99 latency",
                "99th percentile request latency; red over the ServingLatencyP99OverBudget budget.",
                Query(quantile(0.99, LATENCY, MODEL, divide_by=MICROSECONDS)),
                unit="s",
                thresholds=[(THRESHOLDS.serving_p99_latency_budget_seconds, "red")],
            ),
            Stat(
                "Replicas",
                "Current replicas of the autoscaled serving Deployments.",
                Query(f"sum(kube_horizontalpodautoscaler_status_current_replicas{hpa})"),
            ),
        ],
    )
    requests = Row(
        "Requests",
        [
            Graph(
                "Requests/s by status",
                "Request rate per model and TF Serving status code.",
                [Query(sum_rate(REQUESTS, MODEL, ["model_name", "status"]), "{{model_name}} {{status}}")],
                unit="reqps",
                stacked=True,
            ),
            Graph(
                "Error ratio",
                "Share of each model's requests that did not end with status OK.",
                [
                    Query(
                        ratio_or_zero(
                            sum_rate(REQUESTS, ERRORS, ["model_name"]),
                            sum_rate(REQUESTS, MODEL, ["model_name"]),
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
                    Query(
                        quantile(0.5, LATENCY, MODEL, ["model_name"], divide_by=MICROSECONDS),
                        "{{model_name}} p50",
                    ),
                    Query(
                        quantile(0.99, LATENCY, MODEL, ["model_name"], divide_by=MICROSECONDS),
                        "{{model_name}} p99",
                    ),
                    Query(f"vector({THRESHOLDS.serving_p99_latency_budget_seconds:g})", "p99 budget"),
                ],
                unit="s",
                log_scale=True,
            ),
            Graph(
                "Model run time",
                "Median and 99th percentile time the model itself ran per request (without queueing and I/O).",
                [
                    Query(
                        quantile(0.5, RUNTIME, MODEL, ["model_name"], divide_by=MICROSECONDS),
                        "{{model_name}} p50",
                    ),
                    Query(
                        quantile(0.99, RUNTIME, MODEL, ["model_name"], divide_by=MICROSECONDS),
                        "{{model_name}} p99",
                    ),
                ],
                unit="s",
                min=0,
            ),
        ],
    )
    capacity = Row(
        "Capacity and batching",
        [
            Graph(
                "Replicas against the autoscaler",
                "Current and desired replicas of each HPA in the serving namespace, between its min and max.",
                [
                    Query(
                        f"kube_horizontalpodautoscaler_status_current_replicas{hpa}",
                        replicas_legend + " current",
                    ),
                    Query(
                        f"kube_horizontalpodautoscaler_status_desired_replicas{hpa}",
                        replicas_legend + " desired",
                    ),
                    Query(f"kube_horizontalpodautoscaler_spec_min_replicas{hpa}", replicas_legend + " min"),
                    Query(f"kube_horizontalpodautoscaler_spec_max_replicas{hpa}", replicas_legend + " max"),
                ],
                min=0,
            ),
            Graph(
                "Autoscaling metric against its target",
                "The metric each HPA scales on, and the target it holds it to.",
                [
                    Query(
                        f"kube_horizontalpodautoscaler_status_target_metric{hpa}",
                        replicas_legend + " {{metric_name}} current",
                    ),
                    Query(
                        f"kube_horizontalpodautoscaler_spec_target_metric{hpa}",
                        replicas_legend + " {{metric_name}} target",
                    ),
                ],
            ),
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
        ],
    )
    return Board(
        uid="mlstack-serving",
        title="mlstack / Serving",
        description="TF Serving traffic, latency (reported in microseconds, shown in seconds) and errors; autoscaling; batching.",
        rows=[overview, requests, capacity],
        variables=[Variable("model", "Model", f"label_values({REQUESTS}, model_name)")],
        tags=("mlstack", "serving"),
    )
