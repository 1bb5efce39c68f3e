"""Stage embed: one token co-occurrence vector per token id, for each tokenizer (fastText skipgram).

Reads:   tokens/{source,target}/train/
Writes:  embeddings/{source,target}{.npy,_ids.npy,_counts.npy}, embeddings/summary.json
Changed by: embedding.*
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import InputError
from ..io import atomic_dir, write_json
from ..run.context import StageContext, StageSpec
from ..run.layout import SIDES

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    """Train both sides' vectors and write them with their ids and corpus counts; return a summary."""
    import numpy as np

    from ..align.vectors import shard_vectors
    from ..text.shards import ShardReader

    ft, layout = ctx.config.embedding.fasttext, ctx.layout
    readers = {}
    for side in SIDES:
        d = layout.token_shards(side, "train")
        if not (d / "meta.json").exists():
            raise InputError(f"{d} is missing or unfinished; run the tokenize stage first")
        readers[side] = ShardReader(d)
        if readers[side].num_tokens == 0:
            raise InputError(f"{d} holds no tokens; the corpus is empty for the {side} tokenizer")
    summary: dict[str, Any] = {"dim": ft.dim, "model": ft.model, "thread": ft.thread or os.cpu_count()}
    with atomic_dir(layout.embeddings_dir) as tmp:
        for side, reader in readers.items():
            vecs, ids, counts, seen = shard_vectors(reader, ft, scratch=tmp)
            for key, array in (("vectors", vecs), ("ids", ids), ("counts", counts)):
                np.save(layout.staged(layout.embedding_files(side)[key], layout.embeddings_dir, tmp), array)
            vocab_size = int(reader.meta.get("vocab_size") or 0)
            summary[side] = {
                "rows": int(ids.size),
                "vocab_size": vocab_size,
                "ids_seen": seen,
                "share_of_vocab": round(ids.size / vocab_size, 4) if vocab_size else None,
                "tokens": reader.num_tokens,
            }
            log.info(
                "embed %s: %d vectors of dim %d (%.1f%% of the vocabulary)",
                side,
                ids.size,
                ft.dim,
                100 * ids.size / max(vocab_size, 1),
            )
        write_json(layout.staged(layout.embeddings_summary, layout.embeddings_dir, tmp), summary)
    return summary


SPEC = StageSpec(
    name="embed",
    run=run,
    config_keys=("embedding",),
    inputs=("tokenize",),
    outputs=lambda layout: (layout.embeddings_dir,),
    description="token co-occurrence embeddings for both tokenizers",
)
