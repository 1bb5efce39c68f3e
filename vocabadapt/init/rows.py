"""Building the target rows of an embedding or head matrix from source rows and an init Recipe.

Rows are built in float64 and cast back to the checkpoint's dtype, so a copied row is bit-identical
to its source row. Padding rows (past the target vocabulary) are zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from . import Recipe


def row_stats(src: torch.Tensor, n_used: int, block: int = 2048) -> dict[str, torch.Tensor]:
    """Per-dimension mean and std and the mean row norm of src[:n_used], in float64, blockwise."""
    h = src.shape[1]
    total = torch.zeros(h, dtype=torch.float64)
    norms = torch.zeros((), dtype=torch.float64)
    for a in range(0, n_used, block):
        rows = src[a : min(a + block, n_used)].to(torch.float64)
        total += rows.sum(0)
        norms += rows.norm(dim=1).sum()
    mean = total / n_used
    sq = torch.zeros(h, dtype=torch.float64)
    for a in range(0, n_used, block):
        sq += ((src[a : min(a + block, n_used)].to(torch.float64) - mean) ** 2).sum(0)
    std = (sq / max(n_used - 1, 1)).sqrt()
    return {"mean": mean, "std": std, "mean_norm": norms / n_used}


def build_rows(
    src: torch.Tensor,
    recipe: Recipe,
    n_used: int,
    n_rows: int,
    seed: int = 0,
    norm_match: bool = False,
    out_dtype: torch.dtype | None = None,
    name: str = "embedding",
    block: int = 2048,
) -> torch.Tensor:
    """Rows for the target vocabulary from source rows.

    Args:
        src: (source_rows, hidden) source matrix.
        recipe: one entry per target id (len(recipe) <= n_rows).
        n_used: source rows that belong to real source tokens (mean/std/random use src[:n_used]).
        n_rows: rows of the result; rows past len(recipe) are padding (zero).
        seed: seed of `random` rows.
        norm_match: rescale each combined row to the weighted mean norm of its source rows (mean rows
            to the mean norm of all source rows); exact copies and random rows are left as they are.
        out_dtype: dtype of the result (default: src's).
        name: the tensor's name, for error messages.
    Returns:
        (n_rows, hidden) tensor. Each row with sources is sum_j w_j * src[id_j], summed in float64 in
        the order listed, then cast (so a copy is bit-identical).
    Raises:
        InputError: a source id out of range; a built row with NaN or Inf.
    """
    n_src, h = src.shape
    n_tgt = len(recipe)
    out_dtype = out_dtype or src.dtype
    out = torch.zeros(n_rows, h, dtype=out_dtype)
    flat = _FlatRecipe.of(recipe, n_src, name)
    # per-dimension mean/std and mean norm: a full pass over the source rows, only when some row needs them
    needs_stats = bool(flat.is_mean.any() or flat.is_random.any() or norm_match)
    stats = row_stats(src, n_used) if needs_stats else {}
    for a in range(0, n_tgt, block):
        b = min(a + block, n_tgt)
        out[a:b] = _combined_rows(src, flat, a, b, stats, norm_match)
        copies = flat.is_exact_copy[a:b].nonzero().flatten()  # the common case: one source row, weight 1
        out[a + copies] = src[flat.ids[flat.starts[a:b][copies]]].to(out_dtype)  # as they are, no float64 detour
    random_ids = flat.is_random.nonzero().flatten()
    if len(random_ids):
        # (n_random, hidden): N(mean, std^2) per dimension of the source rows, seeded
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randn(len(random_ids), h, generator=gen, dtype=torch.float64)
        out[random_ids] = (draws * stats["std"] + stats["mean"]).to(out_dtype)
    _check_finite(out, recipe, name, block)
    return out


@dataclass(frozen=True)
class _FlatRecipe:
    """A ragged Recipe as flat tensors: row t's sources are ids[starts[t] : starts[t] + lens[t]], with weights w."""

    lens: torch.Tensor  # (n_tgt,) long
    starts: torch.Tensor  # (n_tgt,) long
    ids: torch.Tensor  # (n_sources,) long
    w: torch.Tensor  # (n_sources,) float64
    is_mean: torch.Tensor  # (n_tgt,) bool: mean (or special) rows without sources
    is_random: torch.Tensor  # (n_tgt,) bool
    is_zero: torch.Tensor  # (n_tgt,) bool
    is_exact_copy: torch.Tensor  # (n_tgt,) bool: one source, weight 1 (left untouched by norm_match)

    @classmethod
    def of(cls, recipe: Recipe, n_src: int, name: str) -> _FlatRecipe:
        """The flat form of `recipe`, its source ids checked against the n_src source rows.

        Raises:
            InputError: a source id out of range.
        """
        lens = torch.tensor([len(i) for i in recipe.source_ids], dtype=torch.long)  # (n_tgt,)
        starts = torch.cumsum(lens, 0) - lens
        flat_ids = torch.tensor([s for ids in recipe.source_ids for s in ids], dtype=torch.long)
        flat_w = torch.tensor([x for w in recipe.weights for x in w], dtype=torch.float64)
        if len(flat_ids) and (int(flat_ids.min()) < 0 or int(flat_ids.max()) >= n_src):
            raise InputError(f"{name}: the recipe uses source ids outside 0..{n_src - 1} (the matrix has {n_src} rows)")
        labels = recipe.labels
        first_w = torch.zeros(len(recipe), dtype=torch.float64)
        first_w[lens > 0] = flat_w[starts[lens > 0]]
        return cls(
            lens=lens,
            starts=starts,
            ids=flat_ids,
            w=flat_w,
            is_mean=torch.tensor([label in ("mean", "special") for label in labels]) & (lens == 0),
            is_random=torch.tensor([label == "random" for label in labels], dtype=torch.bool),
            is_zero=torch.tensor([label == "zero" for label in labels], dtype=torch.bool),
            is_exact_copy=(lens == 1) & (first_w == 1.0),
        )


def _combined_rows(
    src: torch.Tensor, flat: _FlatRecipe, a: int, b: int, stats: dict[str, torch.Tensor], norm_match: bool
) -> torch.Tensor:
    """(b - a, hidden) float64: target rows a..b-1 as weighted sums of their source rows (mean rows from
    `stats`, norm-matched when asked); exact copies are left zero here, for the caller to copy."""
    h = src.shape[1]
    acc = torch.zeros(b - a, h, dtype=torch.float64)  # (block, hidden); small blocks bound the peak
    blens, bstarts, is_copy = flat.lens[a:b], flat.starts[a:b], flat.is_exact_copy[a:b]
    target_norm = torch.zeros(b - a, dtype=torch.float64)  # weighted mean norm of each row's sources
    for j in range(int(blens.max()) if b > a else 0):
        sel = ((blens > j) & ~is_copy).nonzero().flatten()  # rows with a j-th source
        rows = src[flat.ids[bstarts[sel] + j]].to(torch.float64)  # (len(sel), hidden)
        w = flat.w[bstarts[sel] + j]
        if norm_match:
            target_norm[sel] += w * rows.norm(dim=1)
        acc.index_add_(0, sel, rows.mul_(w[:, None]))  # sel is unique: acc[sel] + w * rows, exactly
    if stats:
        acc[flat.is_mean[a:b]] = stats["mean"]
    if norm_match:
        target_norm[flat.is_mean[a:b]] = stats["mean_norm"]
        have = acc.norm(dim=1)
        rescale = (have > 0) & ~is_copy & ~flat.is_random[a:b] & ~flat.is_zero[a:b]
        acc[rescale] *= (target_norm[rescale] / have[rescale])[:, None]
    return acc


def _check_finite(out: torch.Tensor, recipe: Recipe, name: str, block: int) -> None:
    """Returns nothing; raises InputError naming the first target rows of `out` that hold NaN or Inf."""
    n_tgt = len(recipe)
    bad = [
        t
        for a in range(0, n_tgt, block)
        for t in (a + (~torch.isfinite(out[a : min(a + block, n_tgt)])).any(dim=1).nonzero().flatten()).tolist()
    ]
    if bad:
        show = ", ".join(f"{t} ({recipe.labels[t]} from {recipe.source_ids[t][:5]})" for t in bad[:5])
        raise InputError(
            f"{name}: {len(bad)} built row(s) hold NaN or Inf, e.g. target id {show}. Check the source "
            f"model's rows (are they finite?) and the mapping's weights; with transplant.dtype float16 a "
            f"large row can overflow, use bfloat16 or float32."
        )


def zero_rows(t: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """(rows,) bool: which rows are all zero, computed blockwise (no full-size temporary)."""
    return torch.cat(
        [(t[a : a + block] == 0).all(dim=1) for a in range(0, t.shape[0], block)] or [torch.zeros(0, dtype=torch.bool)]
    )


def check_recipe_ids(recipe: Recipe, n_src_rows: int, n_src_tokens: int) -> None:
    for t, (ids, w) in enumerate(zip(recipe.source_ids, recipe.weights)):
        for s in ids:
            if not 0 <= s < n_src_tokens:
                raise InputError(
                    f"mapping entry for target id {t} ({recipe.labels[t]}) uses source id {s}, outside the source "
                    f"tokenizer's ids 0..{n_src_tokens - 1} (the model has {n_src_rows} embedding rows). The mapping "
                    f"was made for another source tokenizer or model; rerun the align stage."
                )
        if len(ids) != len(w):
            raise InputError(f"mapping entry for target id {t}: {len(ids)} source ids but {len(w)} weights")
