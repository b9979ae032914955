"""``python -m dashboards``: regenerate the Grafana dashboards and Prometheus rules (or check them).

Writes ``dashboards/generated/grafana/<uid>.json`` and ``dashboards/generated/prometheus/<group>.rules.yaml``
from the builders in ``dashboards/boards/`` and ``dashboards/rules/``. Commit the result; the test
suite fails when the committed files differ from what the builders generate.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from dashboards import generate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashboards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and list the files that are missing, stale or differ from the builders",
    )
    parser.add_argument(
        "--root",
        type=pathlib.Path,
        default=generate.ROOT,
        help="repository root to write under (default: this checkout)",
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = generate.drift(args.root)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("Run `python -m dashboards` and commit the result.", file=sys.stderr)
            return 1
        print("dashboards/generated is up to date.")
        return 0
    changed = generate.write(args.root)
    for path in changed:
        print(
            f"wrote {path.relative_to(args.root)}"
            if path.exists()
            else f"removed {path.relative_to(args.root)}"
        )
    print(f"{len(changed)} file(s) changed under dashboards/generated.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
