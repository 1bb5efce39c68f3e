"""Stage corpus: read local text, deduplicate, apply the byte budget, split off held-out text.

Reads:   corpus.inputs, corpus.heldout_inputs and corpus.exclude_inputs (local .jsonl / .txt / .parquet, optionally .gz)
Writes:  corpus/train.jsonl, corpus/heldout.jsonl, corpus/stats.json
Changed by: corpus.*, tokenization.min_line_length
"""

from __future__ import annotations

from typing import Any

from ..io import write_json
from ..run.context import StageContext, StageSpec


def run(ctx: StageContext) -> dict[str, Any]:
    """Write the two corpus splits and their statistics; return the statistics without the per-file part."""
    from ..text.corpus import split_corpus

    layout = ctx.layout
    stats = split_corpus(
        ctx.config.corpus, ctx.config.tokenization.min_line_length, layout.corpus("train"), layout.corpus("heldout")
    )
    write_json(layout.corpus_stats, stats)
    return {k: v for k, v in stats.items() if k != "files"}


SPEC = StageSpec(
    name="corpus",
    run=run,
    config_keys=("corpus", "tokenization.min_line_length"),
    inputs=(),
    outputs=lambda layout: (layout.corpus_dir,),
    description="read, deduplicate, budget and split the text",
)
