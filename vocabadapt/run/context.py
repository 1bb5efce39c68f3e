"""What a stage is (StageSpec) and what it runs with (StageContext).

A stage module in vocabadapt.stages defines one SPEC (or, for training, two) beside its `run(ctx)`:
the config keys whose values change its output, the stages whose outputs it reads, the artifacts it
writes (as RunLayout paths) and what it keeps across an interruption. The runner fingerprints the
outputs in manifest.json and skips a stage whose record still holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .layout import RunLayout

if TYPE_CHECKING:
    from ..config import Config
    from ..model.hub import DownloadRetry

Paths = Callable[[RunLayout], tuple[Path, ...]]


def _none(layout: RunLayout) -> tuple[Path, ...]:
    return ()


@dataclass(frozen=True)
class StageSpec:
    """One stage: its function, what changes it, what it reads and what it writes."""

    name: str
    run: Callable[[StageContext], dict[str, Any]]
    config_keys: tuple[str, ...]  # dotted config paths whose values change its output
    inputs: tuple[str, ...]  # upstream stages whose outputs it reads
    outputs: Paths  # the artifacts it writes (fingerprinted in the manifest)
    description: str
    # Resume state (checkpoints) kept across an interruption but cleared when a finished stage is
    # redone because its keys or inputs changed, or under --force: stale weights must not be resumed.
    resume_state: Paths = _none

    def output_names(self, layout: RunLayout) -> list[str]:
        """The outputs as run-relative names (the manifest's keys, e.g. "model/init")."""
        return [p.relative_to(layout.root).as_posix() for p in self.outputs(layout)]


@dataclass
class StageContext:
    """What a stage gets: the run's layout, the validated config, its name and position in the run."""

    layout: RunLayout
    config: Config
    stage: str
    index: int = 0  # 1-based position among the stages of this invocation
    total: int = 0

    @property
    def run_dir(self) -> Path:
        return self.layout.root

    @property
    def download_retry(self) -> DownloadRetry:
        """How the stage retries a model or tokenizer download (pipeline.max_retries, pipeline.retry_backoff)."""
        from ..model.hub import DownloadRetry

        return DownloadRetry.from_config(self.config.pipeline)

    def progress(self, total: int | None = None, unit: str = "it", desc: str | None = None) -> Any:
        """A progress bar labelled with the stage's position in the run ("[3/9] embed")."""
        from tqdm.auto import tqdm

        label = f"[{self.index}/{self.total}] {desc or self.stage}"
        return tqdm(total=total, unit=unit, desc=label, leave=False, dynamic_ncols=True, disable=None)
