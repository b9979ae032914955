"""The PromQL metric-name extractor: every name a query reads, nothing else, and loud failures."""

import pytest

from dashboards.promql import PromQLError, metric_names, variable_query_metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="node-exporter"} == 0', {"up"}),
        ("rate(node_cpu_seconds_total[5m])", {"node_cpu_seconds_total"}),
        (
            "sum by (instance) (rate(node_cpu_seconds_total{mode='idle'}[$__rate_interval]))",
            {"node_cpu_seconds_total"},
        ),
        ("sum(rate(a_total[5m])) by (job) / on (job) group_left (team) b_info", {"a_total", "b_info"}),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m]))) / 1e6", {"x_bucket"}),
        ("rate(:tensorflow:serving:request_count[5m])", {":tensorflow:serving:request_count"}),
        ('level:metric:rate5m{quantile="0.99"} > 0.25', {"level:metric:rate5m"}),
        ('{__name__="exact_name", job="x"}', {"exact_name"}),
        ("max_over_time(deriv(a[5m])[1h:5m])", {"a"}),
        ("a offset 5m and b @ start() unless c offset -1h30m", {"a", "b", "c"}),
        ('count_values("version", build_info) or vector(0) + Inf - NaN', {"build_info"}),
        ('label_replace(up, "dst", "$1", "instance", "(.*):.*")', {"up"}),
        ("a > bool 1 and ignoring (mode) b", {"a", "b"}),
        ("topk(3, sum without (cpu, mode) (c))", {"c"}),
        ('time() - max by (run) (ts{run=~"$run"} > 0)', {"ts"}),
        ('x{a=~"${var}"} * on() group_right y', {"x", "y"}),
        ("# a comment naming not_a_metric\nreal_metric", {"real_metric"}),
        ("vector(0.25)", set()),
    ],
)
def test_extracts_exactly_the_metric_names_a_query_reads(expr, names):
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('{__name__=~"node_.*"}', "pattern"),
        ("no_such_function(up)", "unknown function 'no_such_function'"),
        ("sum(rate(a[5m])", "unbalanced"),
        ("rate(a[5m]))", "unbalanced"),
        ("rate(a[5m)", "never closed"),
        ("a ~ b", "unexpected character"),
    ],
)
def test_a_query_it_cannot_read_exactly_is_an_error(expr, message):
    with pytest.raises(PromQLError, match=message):
        metric_names(expr)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("label_values(mlstack_train_steps_total, run)", {"mlstack_train_steps_total"}),
        ('label_values(up{job="x"}, instance)', {"up"}),
        ("query_result(topk(5, a_total))", {"a_total"}),
        ("label_values(job)", set()),
    ],
)
def test_reads_the_metric_names_of_grafana_variable_queries(query, names):
    assert variable_query_metric_names(query) == names


def test_an_unsupported_variable_query_is_an_error():
    with pytest.raises(PromQLError, match="unsupported Grafana variable query"):
        variable_query_metric_names("metrics(node_.*)")
