"""Mean baseline: every non-special target row is the mean of all source rows.

This is what `transformers` does for rows added by `resize_token_embeddings` (Hewitt, "Initializing
new word embeddings for pretrained language models", 2021). Identical tokens get the mean too, so the
baseline does not already hold every shared token's trained row; special tokens keep their entry.
"""

from __future__ import annotations

from . import InitContext, Recipe, baseline_recipe


def recipe(ctx: InitContext) -> Recipe:
    return baseline_recipe(ctx, "mean")
