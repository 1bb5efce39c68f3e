"""Where this process stands in a multi-process training run (torchrun / accelerate set the variables)."""

from __future__ import annotations

import os


def world() -> tuple[int, int]:
    """(rank, world size) as torchrun / accelerate set them; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return world()[0] == 0
