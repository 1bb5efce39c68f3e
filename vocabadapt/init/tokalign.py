"""TokAlign row initialisation: each aligned target token copies the row of its top-1 source token.

Li et al., "TokAlign: Efficient Vocabulary Adaptation via Token Alignment" (ACL 2025): after aligning
target tokens to source tokens, the embedding and LM-head rows of a target token are those of its
best-matching source token. Soft entries are reduced to their highest-weight source id (first on a
tie); every other entry (special, identical, fvt, mean, random, zero) is built as the mapping says.
"""

from __future__ import annotations

from . import InitContext, Recipe, entry


def recipe(ctx: InitContext) -> Recipe:
    labels, ids, weights = [], [], []
    for tid in range(ctx.mapping.target_vocab_size):
        label, i, w = entry(ctx, tid)
        if label in ("aligned", "soft") and i:
            best = max(range(len(i)), key=lambda k: (w[k], -k))  # highest weight, first on a tie
            label, i, w = "aligned", [i[best]], [1.0]
        labels.append(label)
        ids.append(i)
        weights.append(w)
    return Recipe(labels, ids, weights)
