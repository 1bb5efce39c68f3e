"""Stage embed: one token co-occurrence vector per token id, for each tokenizer (fastText skipgram).

Reads:   tokens/{source,target}/train/
Writes:  embeddings/{source,target}{.npy,_ids.npy,_counts.npy}, embeddings/summary.json
Keeps:   partial/embed/ while it runs: a side whose vectors are finished is not trained again after a kill
Changed by: whether vectors are trained (Config.vector_plan: embedding.enabled, alignment.init) and, when
            they are, embedding.backend and embedding.fasttext.*

Vectors are trained only when something reads them: with `embedding.enabled: auto` (the default) and an
alignment.init that reads no vector alignment (vocabadapt.registry.INITIALISERS says which) the stage
trains nothing and writes embeddings/summary.json alone, saying so and why. Switching between such
initialisers leaves the stage up to date; switching to one that reads vectors (or to null) reruns it.

What resumes and what does not: the unit is one tokenizer side. fastText trains all epochs inside one
C++ call with no checkpoint or epoch callback (and Hogwild threads make a restart from saved vectors
differ from an uninterrupted run anyway), so a kill inside a side's training redoes that side; a side
already finished (source is trained first) is kept. With `thread: 1` the resumed result is bitwise
the uninterrupted one.
"""

from __future__ import annotations

import logging
from typing import Any

from ..config import Config
from ..errors import InputError
from ..io import atomic_dir, atomic_write, read_json_or_none, replace_dir, write_json
from ..run.context import StageContext, StageSpec
from ..run.layout import SIDES

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    """Train both sides' vectors and write them with their ids and corpus counts; return a summary."""
    import numpy as np

    from ..align.vectors import shard_vectors
    from ..run.partial import file_identity, finish_partial, open_partial
    from ..text.shards import ShardReader
    from ..text.tokenizers import available_cpus

    ft, layout = ctx.config.embedding.fasttext, ctx.layout
    plan = ctx.config.vector_plan()
    if not plan.trained:
        skipped = {"skipped": True, "reason": plan.reason}
        with atomic_dir(layout.embeddings_dir) as tmp:  # replaces vectors of an earlier config, if any
            write_json(layout.staged(layout.embeddings_summary, layout.embeddings_dir, tmp), skipped)
        log.info("embed: no vectors trained: %s", plan.reason)
        return {**skipped, "note": f"no vectors trained: {plan.reason}"}  # the progress line says why
    readers = {}
    for side in SIDES:
        d = layout.token_shards(side, "train")
        if not (d / "meta.json").exists():
            raise InputError(f"{d} is missing or unfinished; run the tokenize stage first")
        readers[side] = ShardReader(d)
        if readers[side].num_tokens == 0:
            raise InputError(f"{d} holds no tokens; the corpus is empty for the {side} tokenizer")
    partial = layout.partial("embed")
    key = {
        "config": SPEC.config_hash(ctx.config),
        "tokens": file_identity([layout.token_shards(side, "train") / "meta.json" for side in SIDES]),
    }
    resuming = open_partial(partial, key)
    staging = partial / "embeddings"
    summary: dict[str, Any] = {"dim": ft.dim, "model": ft.model, "thread": ft.thread or available_cpus()}
    for side, reader in readers.items():
        done_file = partial / f"{side}.done.json"
        if resuming and (side_summary := read_json_or_none(done_file)) is not None:
            log.info("embed %s: kept from the interrupted run (its vectors were finished)", side)
            summary[side] = side_summary
            continue
        vecs, ids, counts, seen = shard_vectors(reader, ft, scratch=partial)
        for key_name, array in (("vectors", vecs), ("ids", ids), ("counts", counts)):
            with atomic_write(
                layout.staged(layout.embedding_files(side)[key_name], layout.embeddings_dir, staging), "wb"
            ) as f:
                np.save(f, array)
        vocab_size = int(reader.meta.get("vocab_size") or 0)
        summary[side] = {
            "rows": int(ids.size),
            "vocab_size": vocab_size,
            "ids_seen": seen,
            "share_of_vocab": round(ids.size / vocab_size, 4) if vocab_size else None,
            "tokens": reader.num_tokens,
        }
        write_json(done_file, summary[side])  # the side is finished: a kill from here on keeps it
        log.info(
            "embed %s: %d vectors of dim %d (%.1f%% of the vocabulary)",
            side,
            ids.size,
            ft.dim,
            100 * ids.size / max(vocab_size, 1),
        )
    write_json(layout.staged(layout.embeddings_summary, layout.embeddings_dir, staging), summary)
    replace_dir(staging, layout.embeddings_dir)
    finish_partial(partial)
    return summary


def config_use(config: Config) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The keys that change the vectors, or none when no vectors are trained (then only that fact counts)."""
    if config.vector_plan().trained:
        return ("embedding.backend", "embedding.fasttext"), {"vectors": True}
    return (), {"vectors": False}


SPEC = StageSpec(
    name="embed",
    run=run,
    config_keys=("embedding", "alignment.init"),
    config_use=config_use,
    inputs=("tokenize",),
    outputs=lambda layout: (layout.embeddings_dir,),
    resume_state=lambda layout: (layout.partial("embed"),),
    description="token co-occurrence embeddings for both tokenizers",
)
