"""Which metric names a PromQL expression reads: a small tokenizer, enough to check names, not to evaluate.

Prometheus 2.42 has no command that lists an expression's metric names (``promtool`` only checks
syntax, which :mod:`dashboards.contract` uses as well), so this module walks the tokens: an
identifier is a metric name unless it is a keyword, a function or aggregation (followed by ``(``),
a label name (inside ``{...}`` or a ``by (...)``-style list) or a number literal (``Inf``, ``NaN``).
Ranges and subqueries (``[5m]``, ``[$__rate_interval]``, ``[1h:5m]``) hold no names and are skipped
whole; Grafana variables (``$var``, ``${var}``, ``[[var]]``) are skipped too.

Anything this module cannot check exactly is an error, never a silent pass: a metric chosen by a
regular expression on ``__name__``, an unknown function, unbalanced brackets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Functions and aggregation operators of PromQL as of Prometheus 2.42.
FUNCTIONS = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
    ]
)
AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    }
)
# Keywords followed by a parenthesised list of label names.
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2"})
# `@ start()` and `@ end()` modifiers.
AT_FUNCTIONS = frozenset({"start", "end"})
NUMBER_WORDS = frozenset({"inf", "nan"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
  | (?P<range>\[)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)(?![\w:])
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<operator>=~|!~|!=|==|<=|>=|[-+*/%^<>=@,(){}])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    """The expression cannot be read (or its metric names cannot be known exactly)."""


def tokens(expr: str) -> Iterator[tuple[str, str]]:
    """(kind, text) pairs, without spaces and comments; a ``[...]`` range comes as one ``range`` token."""
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise PromQLError(f"unexpected character {expr[pos]!r} at offset {pos} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind == "range":
            end = expr.find("]", pos)
            if end < 0:
                raise PromQLError(f"'[' at offset {pos} is never closed in {expr!r}")
            yield "range", expr[pos : end + 1]
            pos = end + 1
            continue
        if kind not in ("space", "comment"):
            yield kind, match.group()
        pos = match.end()


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (including those given as ``{__name__="..."}``)."""
    toks = list(tokens(expr))
    names: set[str] = set()
    depth = {"(": 0, "{": 0}
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "operator" and text in "(){}":
            opener = {")": "(", "}": "{"}.get(text, text)
            depth[opener] += 1 if text == opener else -1
            if depth[opener] < 0:
                raise PromQLError(f"unbalanced {text!r} in {expr!r}")
        elif kind == "identifier":
            if depth["{"]:
                i = _label_matcher(toks, i, expr, names)
                continue
            lowered = text.lower()
            if lowered in LABEL_LIST_KEYWORDS:
                i = _skip_label_list(toks, i + 1, expr)
                continue
            is_aggregation = text in AGGREGATIONS and following in ("(", "by", "without")
            if lowered in KEYWORDS or lowered in NUMBER_WORDS or is_aggregation:
                pass
            elif following == "(":
                if text not in FUNCTIONS and text not in AT_FUNCTIONS:
                    raise PromQLError(f"unknown function {text!r} in {expr!r}")
            else:
                names.add(text)
        i += 1
    if any(depth.values()):
        raise PromQLError(f"unbalanced brackets in {expr!r}")
    return names


def _label_matcher(toks: list[tuple[str, str]], i: int, expr: str, names: set[str]) -> int:
    """Reads `label op "value"` inside braces; a `__name__` equality names a metric. Returns the next index."""
    label = toks[i][1]
    if label == "__name__":
        op = toks[i + 1][1] if i + 1 < len(toks) else ""
        value_kind, value = toks[i + 2] if i + 2 < len(toks) else ("", "")
        if op != "=" or value_kind != "string":
            raise PromQLError(
                f"__name__ {op} {value} in {expr!r}: a metric chosen by a pattern cannot be checked; name it"
            )
        names.add(value[1:-1])
    return i + 1


def _skip_label_list(toks: list[tuple[str, str]], i: int, expr: str) -> int:
    """Skips `(a, b)` after by/without/on/ignoring/group_left/group_right; the list is optional for group_*."""
    if i >= len(toks) or toks[i][1] != "(":
        return i
    while i < len(toks) and toks[i][1] != ")":
        if toks[i][0] not in ("identifier", "operator", "string"):
            raise PromQLError(f"unexpected {toks[i][1]!r} in a label list in {expr!r}")
        i += 1
    if i >= len(toks):
        raise PromQLError(f"label list never closed in {expr!r}")
    return i + 1


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.*?)\s*,\s*\w+\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<query>.*)\)\s*$", re.S)


def variable_query_metric_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query (``label_values(sel, label)``, ``query_result(q)``)."""
    if match := _LABEL_VALUES.match(query):
        return metric_names(match["selector"])
    if match := _QUERY_RESULT.match(query):
        return metric_names(match["query"])
    if re.match(r"^\s*label_values\(\s*\w+\s*\)\s*$", query) or re.match(r"^\s*label_names\(", query):
        return set()
    raise PromQLError(f"unsupported Grafana variable query {query!r}: use label_values(selector, label)")
