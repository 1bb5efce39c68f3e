"""Soft row initialisation: each aligned target row is the weighted combination of its top-k source rows.

The weights are the mapping's (a softmax over the top-k relative-representation cosines, see
alignment.soft_temperature), in the spirit of WECHSEL (Minixhofer et al., NAACL 2022) and FOCUS
(Dobler & de Melo, EMNLP 2023), which build new rows as similarity-weighted sums of source rows.
Every entry is built exactly as the mapping says, so this equals alignment.init = null; it exists
under its own name so a benchmark can ask for it explicitly.
"""

from __future__ import annotations

from . import InitContext, Recipe, mapping_recipe


def recipe(ctx: InitContext) -> Recipe:
    return mapping_recipe(ctx)
