"""Stage align: map every target token to the source rows that should seed it (TokAlign).

Reads:   tokenizers/{source,target}/, embeddings/, corpus/heldout.jsonl (span test)
Writes:  align/mapping.json, align/provenance.jsonl, align/summary.json
Changed by: alignment.* except init, norm_match and block_size (those change transplant, or nothing)
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..io import atomic_dir, write_json
from ..run.context import StageContext, StageSpec

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    """Align the run's two vocabularies and write the mapping, its provenance and summary."""
    from ..align.rules import SPAN_TEST_MAX_BYTES, Embeddings, align_vocabularies

    layout = ctx.layout
    tgt, src = layout.tokenizer("target"), layout.tokenizer("source")
    result = align_vocabularies(
        tgt,
        src,
        Embeddings(*layout.embeddings("target")),
        Embeddings(*layout.embeddings("source")),
        ctx.config.alignment,
        layout.heldout_texts(SPAN_TEST_MAX_BYTES),
    )
    with atomic_dir(layout.align_dir) as tmp:
        result.mapping.save(layout.staged(layout.mapping, layout.align_dir, tmp))
        with open(layout.staged(layout.provenance, layout.align_dir, tmp), "w", encoding="utf-8") as f:
            for rec in result.provenance():
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        write_json(layout.staged(layout.align_summary, layout.align_dir, tmp), result.summary)
    log.info("align: coverage %.1f%%, %s", 100 * result.summary["coverage"], result.summary["counts"])
    return result.summary


SPEC = StageSpec(
    name="align",
    run=run,
    config_keys=(
        "alignment.pivot_count",
        "alignment.pivot_strategy",
        "alignment.similarity_threshold",
        "alignment.method",
        "alignment.top_k",
        "alignment.soft_temperature",
        "alignment.fallback",
        "alignment.seed",
    ),
    inputs=("tokenize", "embed"),
    outputs=lambda layout: (layout.align_dir,),
    description="map every target token to source rows",
)
