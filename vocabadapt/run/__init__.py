"""Running the pipeline: the run directory's layout, stage specs and contexts, manifest, lock, runner."""

from .context import StageContext, StageSpec
from .layout import RunLayout

__all__ = ["RunLayout", "StageContext", "StageSpec"]
