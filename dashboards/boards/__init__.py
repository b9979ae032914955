"""The mlstack dashboards, one module each; ``BOARDS`` lists them in the order they are generated."""

from __future__ import annotations

from collections.abc import Callable

from dashboards.boards import data, gpu_nodes, serving, training
from dashboards.panels import Board

BOARDS: tuple[Callable[[], Board], ...] = (gpu_nodes.board, training.board, serving.board, data.board)


def all_boards() -> list[Board]:
    return [make() for make in BOARDS]
