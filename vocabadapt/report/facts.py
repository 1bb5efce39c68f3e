"""What a report shows: the facts of one run, and the small formatters the report's parts share.

RunFacts holds what earlier stages wrote (read through vocabadapt.run.layout by the report stage);
anything missing is an empty value, so a report can be made from a partial run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..training.settings import TRAIN_STAGES
from ..values import ci, fmt, get

__all__ = ["MODEL_ORDER", "STAGES", "RunFacts", "ci", "fmt", "get", "model_names"]

MODEL_ORDER = ("source", "baseline", "init", *TRAIN_STAGES)  # the report's row order of models
STAGES = TRAIN_STAGES


@dataclass
class RunFacts:
    """The run's artifacts as the report reads them (every field may be empty)."""

    name: str  # the run directory's name (the report's title)
    location: Path  # the run directory (shown, never read)
    summary: dict = field(default_factory=dict)  # eval/summary.json
    checklist: list = field(default_factory=list)  # eval/checklist.json
    train: dict = field(default_factory=dict)  # {stage: training summary}
    metrics: dict[str, list[dict]] = field(default_factory=dict)  # {stage: metrics.jsonl records}
    align: dict = field(default_factory=dict)  # align/summary.json
    transplant: dict = field(default_factory=dict)  # model/init/transplant.json
    manifest: dict = field(default_factory=dict)  # manifest.json
    config_text: str | None = None  # config.yaml


def model_names(summary: dict) -> list[str]:
    models = summary.get("models", {})
    return [m for m in MODEL_ORDER if m in models] + [m for m in models if m not in MODEL_ORDER]
