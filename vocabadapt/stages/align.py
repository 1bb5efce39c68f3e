"""Stage align: map every target token to the source rows that should seed it (TokAlign).

Reads:   tokenizers/{source,target}/, embeddings/, corpus/heldout.jsonl (span test)
Writes:  align/mapping.json, align/provenance.jsonl, align/summary.json
Changed by: whether vectors are trained (Config.vector_plan: embedding.enabled, alignment.init); with
            vectors, alignment.* except init, norm_match, block_size and the calibration keys (those change
            transplant, or nothing); without, alignment.fallback and alignment.seed only

Without vectors (an alignment.init that reads no vector alignment, embedding.enabled: auto) the mapping
holds special and identical tokens and the fallback for every other token, and the summary says that no
vector alignment was done and why.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..config import Config
from ..config.schema import VECTOR_ALIGNMENT_KEYS
from ..io import atomic_dir, write_json
from ..run.context import StageContext, StageSpec

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    """Align the run's two vocabularies and write the mapping, its provenance and summary."""
    from ..align.aligner import SPAN_TEST_MAX_BYTES, align_vocabularies, map_without_vectors
    from ..align.rules import Embeddings

    layout, plan = ctx.layout, ctx.config.vector_plan()
    tgt, src = layout.tokenizer("target"), layout.tokenizer("source")
    if plan.trained:
        result = align_vocabularies(
            tgt,
            src,
            Embeddings(*layout.embeddings("target")),
            Embeddings(*layout.embeddings("source")),
            ctx.config.alignment,
            layout.heldout_texts(SPAN_TEST_MAX_BYTES),
        )
    else:
        result = map_without_vectors(tgt, src, ctx.config.alignment, plan.reason)
    with atomic_dir(layout.align_dir) as tmp:
        result.mapping.save(layout.staged(layout.mapping, layout.align_dir, tmp))
        with open(layout.staged(layout.provenance, layout.align_dir, tmp), "w", encoding="utf-8") as f:
            for rec in result.provenance():
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        write_json(layout.staged(layout.align_summary, layout.align_dir, tmp), result.summary)
    log.info("align: coverage %.1f%%, %s", 100 * result.summary["coverage"], result.summary["counts"])
    if not plan.trained:
        log.info("align: no vector alignment (%s): identical tokens and the fallback only", plan.reason)
        return {**result.summary, "note": f"identical tokens + fallback, no vector alignment: {plan.reason}"}
    return result.summary


# The keys that change the vector alignment; without vectors only the fallback's keys do.
FALLBACK_KEYS = ("alignment.fallback", "alignment.seed")
VECTOR_KEYS = (*VECTOR_ALIGNMENT_KEYS, *FALLBACK_KEYS)


def config_use(config: Config) -> tuple[tuple[str, ...], dict[str, Any]]:
    """VECTOR_KEYS when vectors are trained, else FALLBACK_KEYS; with that fact."""
    trained = config.vector_plan().trained
    return (VECTOR_KEYS if trained else FALLBACK_KEYS), {"vectors": trained}


SPEC = StageSpec(
    name="align",
    run=run,
    config_keys=(*VECTOR_KEYS, "embedding.enabled", "alignment.init"),
    config_use=config_use,
    inputs=("tokenize", "embed"),
    outputs=lambda layout: (layout.align_dir,),
    description="map every target token to source rows",
)
