"""FVT row initialisation: a target token's row is the mean of the rows of its source-tokenizer pieces.

Gee et al., "Fast Vocabulary Transfer for Language Model Compression" (EMNLP 2022, industry track):
decode the target token to text, tokenise that text with the source tokenizer (no special tokens) and
average the pieces' rows. Every non-special, non-identical target token is recomputed here, whatever
the mapping said; special and identical tokens keep their mapping entry (a copy). A token that decodes
to nothing gets the mean row.

The segmentation itself (decode, re-tokenise, the byte-level fallback for partial UTF-8 characters) is
vocabadapt.text.vocab.fvt_pieces, which the align stage's fvt fallback shares.
"""

from __future__ import annotations

import logging

from ..text.vocab import fvt_pieces
from . import InitContext, Recipe, entry

__all__ = ["fvt_pieces", "recipe"]

log = logging.getLogger(__name__)


def recipe(ctx: InitContext) -> Recipe:
    n = ctx.mapping.target_vocab_size
    special = ctx.special_ids()
    keep = {tid for tid in range(n) if tid in special or ctx.mapping.methods[tid] == "identical"}
    todo = [tid for tid in range(n) if tid not in keep]
    pieces = dict(zip(todo, fvt_pieces(ctx.target_tokenizer, ctx.source_tokenizer, todo)))
    labels, ids, weights = [], [], []
    empty = 0
    for tid in range(n):
        if tid in keep:
            label, i, w = entry(ctx, tid)
        elif pieces[tid]:
            i = pieces[tid]
            label, w = "fvt", [1.0 / len(i)] * len(i)
        else:
            label, i, w = "mean", [], []
            empty += 1
        labels.append(label)
        ids.append(i)
        weights.append(w)
    if empty:
        log.info("fvt: %d target tokens decode to empty text; they get the mean row", empty)
    ctx.info["fvt_empty_decodes"] = empty
    return Recipe(labels, ids, weights)
