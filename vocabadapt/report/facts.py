"""What a report shows: the facts of one run, and the small formatters the report's parts share.

RunFacts holds what earlier stages wrote (read through vocabadapt.run.layout by the report stage);
anything missing is an empty value, so a report can be made from a partial run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.settings import TRAIN_STAGES

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


def get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(d, dict):
            d = d.get(k)
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return None
    return d


def fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, bool) or x is None:
        return "–" if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 10_000 else f"{x:.{digits}f}"
    return str(x)


def ci(v: Any, ci: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(ci, list) and len(ci) == 2:
        return f"{v:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return f"{v:.{digits}f}"


def model_names(summary: dict) -> list[str]:
    models = summary.get("models", {})
    return [m for m in MODEL_ORDER if m in models] + [m for m in models if m not in MODEL_ORDER]
