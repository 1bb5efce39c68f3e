"""Random baseline: every non-special target row drawn from N(mean, std^2) per hidden dimension.

The mean and standard deviation are those of the source rows of the matrix being built (input and
output separately), i.e. a Gaussian with the source rows' mean and diagonal covariance; draws are
seeded by alignment.seed. Identical tokens are redrawn too (see vocabadapt.init); special tokens keep
their entry.
"""

from __future__ import annotations

from . import InitContext, Recipe, baseline_recipe


def recipe(ctx: InitContext) -> Recipe:
    return baseline_recipe(ctx, "random")
