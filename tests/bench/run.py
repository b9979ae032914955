"""Runs the benchmarks and rewrites docs/benchmarks.md.

Each `tests/bench/bench_<name>.py` defines `run(workdir: pathlib.Path) -> str`, returning a Markdown
section (its own heading, tables of side-by-side measurements and the ratios between them). The page
keeps the sections of benchmarks that were not run this time, so `make bench ONLY=data` refreshes one.
"""

import argparse
import datetime
import importlib
import os
import pathlib
import platform
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Written by `make bench` (`tests/bench/run.py`); every section is one run of its benchmark, with the
machine and date it ran on. Ratios compare measurements taken side by side in that same run.
"""
SECTION = re.compile(r"<!-- bench:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /bench:(?P=name) -->\n", re.S)


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in (ROOT / "tests" / "bench").glob("bench_*.py"))


def machine() -> str:
    cpus = os.cpu_count()
    model = "unknown CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {cpus} x {model}, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", action="append", choices=available(), help="run only this benchmark (repeatable)"
    )
    parser.add_argument(
        "--workdir", default=str(ROOT / "build" / "bench"), help="scratch directory for benchmark data"
    )
    args = parser.parse_args(argv)

    sections = {m["name"]: m["body"] for m in SECTION.finditer(PAGE.read_text())} if PAGE.exists() else {}
    stamp = f"_Machine: {machine()}. Date: {datetime.date.today().isoformat()}._\n\n"
    for name in args.only or available():
        print(f"== benchmark {name}", flush=True)
        module = importlib.import_module(f"tests.bench.bench_{name}")
        workdir = pathlib.Path(args.workdir) / name
        workdir.mkdir(parents=True, exist_ok=True)
        sections[name] = stamp + module.run(workdir).strip() + "\n"
    body = "".join(f"<!-- bench:{n} -->\n{sections[n]}<!-- /bench:{n} -->\n\n" for n in sorted(sections))
    PAGE.write_text(HEADER + "\n" + body)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
