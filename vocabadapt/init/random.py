"""Random baseline: every non-special target row drawn from N(mean, std^2) per hidden dimension.

The mean and standard deviation are those of the source rows of the matrix being built (input and
output separately), i.e. a Gaussian with the source rows' mean and diagonal covariance; draws are
seeded by alignment.seed. Identical tokens are redrawn too (see vocabadapt.init); special tokens keep
their entry.
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
            label, i, w = "random", [], []
        labels.append(label)
        ids.append(i)
        weights.append(w)
    return Recipe(labels, ids, weights)
