"""Mean baseline: every non-special target row is the mean of all source rows.

This is what `transformers` does for rows added by `resize_token_embeddings` (Hewitt, "Initializing
new word embeddings for pretrained language models", 2021). Identical tokens get the mean too, so the
baseline does not already hold every shared token's trained row; special tokens keep their entry.
"""

from __future__ import annotations

from . import InitContext, Recipe, entry


def recipe(ctx: InitContext) -> Recipe:
    special = ctx.special_ids()
    labels, ids, weights = [], [], []
    for tid in range(ctx.mapping.target_vocab_size):
        if tid in special:
            label, i, w = entry(ctx, tid)
        else:
            label, i, w = "mean", [], []
        labels.append(label)
        ids.append(i)
        weights.append(w)
    return Recipe(labels, ids, weights)
