"""Where a metric name may come from, so a dashboard or rule cannot query a name nothing exports.

Four sources, each naming itself in error messages:

- recording rules this package defines;
- the workloads' metrics, read from the tables of docs/interfaces.md (the contract with ``workloads``);
- a real exporter that runs here (node_exporter, Prometheus, the training workers, the development
  server): names read from its ``/metrics`` page (:func:`exposition_names`);
- committed lists of the names an exporter that only runs in the cluster documents
  (``dashboards/exporters/<exporter>.txt``: DCGM, kube-state-metrics, the Kafka and
  HDFS JMX exporter contracts, Prometheus's own series).
"""

from __future__ import annotations

import pathlib
import re
import urllib.request
from collections.abc import Iterable, Mapping

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPORTER_LISTS = ROOT / "dashboards" / "exporters"
INTERFACES = ROOT / "docs" / "interfaces.md"
METRIC_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


class CatalogError(ValueError):
    """A metric list or the interfaces page cannot be read; the message names the file and line."""


def exporter_lists(directory: pathlib.Path = EXPORTER_LISTS) -> dict[str, set[str]]:
    """``{exporter: names}`` from the committed ``<exporter>.txt`` files (``#`` starts a comment)."""
    lists: dict[str, set[str]] = {}
    for path in sorted(directory.glob("*.txt")):
        names: set[str] = set()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            name = line.split("#", 1)[0].strip()
            if not name:
                continue
            if not METRIC_NAME.match(name):
                raise CatalogError(f"{path}:{number}: {name!r} is not a Prometheus metric name")
            if name in names:
                raise CatalogError(f"{path}:{number}: {name} is listed twice")
            names.add(name)
        lists[path.stem] = names
    return lists


def _section(text: str, heading: str, source: pathlib.Path) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(?P<body>.*?)(?=^## |\Z)", text, re.M | re.S)
    if not match:
        raise CatalogError(f"{source}: no '## {heading}' section")
    return match["body"]


def interfaces_metrics(path: pathlib.Path = INTERFACES) -> set[str]:
    """Every series name the workloads' metric tables in docs/interfaces.md promise.

    A row's first cell holds the name in backticks; ``{labels}`` after it are dropped,
    ``name_bucket/_sum/_count`` stands for three series, and a row whose type is ``histogram``
    promises the ``_bucket``, ``_sum`` and ``_count`` series of its name.
    """
    body = _section(path.read_text(encoding="utf-8"), "Prometheus metrics", path)
    names: set[str] = set()
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        written = cells[0].split("`")[1].split("{")[0]
        base, *suffixes = written.split("/")
        if suffixes:
            stem = base.rsplit("_", 1)[0]
            names.update([base, *(stem + suffix for suffix in suffixes)])
        elif cells[1].startswith("histogram"):
            names.update(base + suffix for suffix in HISTOGRAM_SERIES)
        else:
            names.add(base)
    bad = sorted(name for name in names if not METRIC_NAME.match(name))
    if bad:
        raise CatalogError(f"{path}: not metric names: {', '.join(bad)}")
    return names


_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{|\s)")


def exposition_names(text: str) -> set[str]:
    """Names of the samples on a Prometheus text-format ``/metrics`` page."""
    return {match["name"] for line in text.splitlines() if (match := _SAMPLE.match(line))}


def scrape_names(url: str, timeout: float = 10) -> set[str]:
    """Names a live exporter serves at ``url``."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return exposition_names(response.read().decode("utf-8"))


def known_metrics(
    recording_rules: Iterable[str], live: Mapping[str, set[str]] | None = None
) -> dict[str, str]:
    """``{metric name: where it comes from}`` over every source; ``live`` maps an exporter that runs here to its names."""
    known: dict[str, str] = {}
    for exporter, names in exporter_lists().items():
        known.update(dict.fromkeys(names, f"dashboards/exporters/{exporter}.txt"))
    known.update(dict.fromkeys(interfaces_metrics(), "docs/interfaces.md"))
    for exporter, names in (live or {}).items():
        known.update(dict.fromkeys(names, f"{exporter} (scraped here)"))
    known.update(dict.fromkeys(recording_rules, "a recording rule in dashboards/generated/prometheus"))
    return known
