"""The pipeline's stages, in order. Each module is a short recipe: what it reads, what it writes, which
config keys change it (its SPEC), and `run(ctx)`, which calls the library.

    corpus ─► tokenize ─► embed ─► align ─► transplant ─► stage1 ─► stage2 ─► evaluate ─► report

A new stage is a new module with a SPEC, listed here. Stage modules import their library code inside
`run`, so importing this package (the CLI, the audit) does not load torch.
"""

from __future__ import annotations

from ..run.context import StageSpec
from . import align, corpus, embed, evaluate, report, tokenize, train, transplant

STAGES: tuple[StageSpec, ...] = (
    corpus.SPEC,
    tokenize.SPEC,
    embed.SPEC,
    align.SPEC,
    transplant.SPEC,
    train.STAGE1,
    train.STAGE2,
    evaluate.SPEC,
    report.SPEC,
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)

__all__ = ["STAGES", "STAGE_NAMES"]
