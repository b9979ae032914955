"""Progress bars for long work, shown only to a person at a terminal (never in collected logs)."""

from __future__ import annotations

import sys
from typing import Any


def bar(total: int | None, description: str, *, unit: str = "it", enabled: bool | None = None, **kwargs: Any):
    """A tqdm bar on stderr; disabled when stderr is not a terminal unless ``enabled`` says otherwise."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(
        total=total, desc=description, unit=unit, disable=not show, leave=False, dynamic_ncols=True, **kwargs
    )
