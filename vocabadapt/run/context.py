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
# (config) -> (the config keys that change the output under this config, facts derived from the config)
ConfigUse = Callable[["Config"], tuple[tuple[str, ...], dict[str, Any]]]


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
    # For a stage whose dependence on the config is itself decided by the config (embed and align: on
    # whether vectors are trained, Config.vector_plan): the keys that matter under this config and the
    # derived facts, which together make its config hash. None = config_keys, no facts.
    config_use: ConfigUse | None = None

    def config_dependence(self, config: Config) -> tuple[tuple[str, ...], dict[str, Any]]:
        """(config keys, derived facts) that change this stage's output under `config`."""
        return self.config_use(config) if self.config_use is not None else (self.config_keys, {})

    def config_hash(self, config: Config) -> str:
        """The manifest's config hash: the values of config_dependence's keys and its facts."""
        keys, facts = self.config_dependence(config)
        return config.section_hash(keys, facts)

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
