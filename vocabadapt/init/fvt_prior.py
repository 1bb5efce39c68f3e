"""FVT input rows, and output rows that split each source piece's probability among the target tokens it starts.

Input rows are FVT's (Gee et al., EMNLP 2022): the mean of the token's source pieces. Output rows need
another recipe. A target token t whose source segmentation is [p1, ..., pk] is produced by the source model
as p1 first, so the source model's logit of p1 is the right start for t's logit; but p1's probability is
now shared by every target token whose segmentation begins with p1 (p1 itself when it is a target token,
and each longer token built on it). Copying p1's output row into all of them gives each the full share and
costs log2(group size) bits per token; the mean of the pieces (FVT's tied output row) is no probability at
all. Here:

    out[t] = W_out[p1] + log share(t) * u                       (one piece: identical tokens)
    out[t] = (1 - MIX) W_out[p1] + MIX mean_j W_out[pj] + log share(t) * u     (several pieces)

    share(t) = (c(t) + 1/2) / sum over the group of p1 of (c(t') + 1/2)     c = target-token counts in the corpus
    u        = argmin ||H u - 1||^2 + ridge   over the source model's final hidden states H (calibration text)

so that h . u ~= 1 for the hidden states the head sees, and the term adds ~log share(t) to t's logit: the
probability the source model gives p1 is divided among its group in proportion to corpus frequency. A model
whose head has no bias can only add a constant this way. Tied models are untied by the transplant (the
input rows stay FVT's, the output rows are these); identical tokens keep their exact input row.

Measured on SmolLM2-135M -> a 16k biomedical BPE (benchmarks/results/init_smollm2.md, issue 18): held-out
bits per byte at init 1.269 against FVT's 1.365 and the TokAlign chain's 1.584 (source model: 0.986).
"""

from __future__ import annotations

import logging

import torch

from . import InitContext, Recipe, fvt
from .rows import build_rows

log = logging.getLogger(__name__)

RIDGE = 1e-3  # ridge of the bias-direction fit, relative to the number of hidden states
# Weight of the token's FVT head row in a multi-piece token's output row: the later pieces' rows say how
# likely the whole word is in this context, which the first piece's row alone does not (measured on
# SmolLM2 -> 16k BPE: 0.0 -> 1.2775, 0.3 -> 1.2687 held-out bpb at init).
MIX = 0.3


def recipe(ctx: InitContext) -> Recipe:
    """Input rows: FVT's recipe (the output rows are built by `refine_output`)."""
    return fvt.recipe(ctx)


def first_pieces(ctx: InitContext, recipe: Recipe) -> list[int | None]:
    """Per target id: the first source id of its segmentation (its own id for identical tokens), or None
    for special tokens and rows with no source piece."""
    special = ctx.special_ids()
    out: list[int | None] = []
    for tid, (label, ids) in enumerate(zip(recipe.labels, recipe.source_ids)):
        out.append(None if tid in special or not ids or label not in ("identical", "fvt") else ids[0])
    return out


def log_shares(first: list[int | None], target_counts: torch.Tensor) -> torch.Tensor:
    """(target_vocab,) float64: log of each token's share of its first piece's group (0 where first is None).

    Args:
        first: per target id, the first source piece or None (see first_pieces).
        target_counts: (>= target_vocab,) how often each target id occurs in the corpus.
    """
    n = len(first)
    counts = target_counts[:n].to(torch.float64) + 0.5  # add-one-half: unseen tokens keep a small share
    keys = torch.tensor([-1 if p is None else p for p in first], dtype=torch.long)
    has = keys >= 0
    # group sums by first piece: scatter-add the counts onto the piece ids
    totals = torch.zeros(int(keys.max()) + 1 if has.any() else 1, dtype=torch.float64)
    totals.index_add_(0, keys[has], counts[has])
    out = torch.zeros(n, dtype=torch.float64)
    out[has] = (counts[has] / totals[keys[has]]).log()
    return out


def bias_direction(hidden: torch.Tensor, ridge: float = RIDGE) -> torch.Tensor:
    """(hidden,) float64 u with hidden @ u ~= 1: ridge least squares over (N, hidden) final hidden states."""
    h = hidden.to(torch.float64)
    gram = h.T @ h + ridge * h.shape[0] * torch.eye(h.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, h.T @ torch.ones(h.shape[0], dtype=torch.float64))


def output_rows(
    src_out: torch.Tensor,
    base: torch.Tensor,
    first: list[int | None],
    shares: torch.Tensor,
    u: torch.Tensor,
    fvt_rows: torch.Tensor | None = None,
    multi: list[bool] | None = None,
    mix: float = 0.0,
) -> torch.Tensor:
    """(rows, hidden) output rows: base (the input recipe's rows) where first is None, else
    src_out[first] + shares * u; where multi is true, the first piece's row is mixed with the token's
    FVT row of the head: (1 - mix) * src_out[first] + mix * fvt_rows + shares * u. Built in float64, cast
    to base's dtype.

    Args:
        src_out: (source_rows, hidden) the source model's output head.
        base: (target_rows, hidden) rows built from the recipe (kept for special and padding rows).
        first, shares: from first_pieces and log_shares (one per target id).
        u: (hidden,) from bias_direction.
        fvt_rows: (target_rows, hidden) the FVT recipe applied to src_out (needed when mix > 0).
        multi: per target id, whether its segmentation has more than one piece (mixed rows).
        mix: weight of the FVT row for multi-piece tokens.
    """
    out = base.clone()
    tids = [t for t, p in enumerate(first) if p is not None]
    if not tids:
        return out
    sel = torch.tensor(tids, dtype=torch.long)
    pieces = torch.tensor([first[t] for t in tids], dtype=torch.long)
    rows = src_out[pieces].to(torch.float64)
    if mix and fvt_rows is not None and multi is not None:
        m = torch.tensor([multi[t] for t in tids], dtype=torch.bool)
        rows[m] = (1 - mix) * rows[m] + mix * fvt_rows[sel[m]].to(torch.float64)
    rows += shares[sel, None] * u.to(torch.float64)[None, :]
    out[sel] = rows.to(base.dtype)
    return out


def refine(ctx: InitContext, recipe: Recipe, input_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output rows from the source model's head, its hidden states and the corpus counts.

    Args:
        ctx: needs load_source_model and calibration (texts and the hidden-state budget).
        recipe: the FVT recipe this module's `recipe` returned.
        input_rows: (target_rows, hidden) rows built from it (returned unchanged).
    Returns:
        (input_rows, output_rows), both (target_rows, hidden) in input_rows' dtype.
    Raises:
        InputError: no calibration text or no source model directory.
    """
    from ..errors import InputError
    from . import calibration as cal

    if ctx.load_source_model is None or ctx.calibration is None or not ctx.calibration.texts:
        raise InputError(
            "alignment.init = fvt_prior needs the source model and training text (the corpus stage's "
            "corpus/train.jsonl); run the corpus stage first or choose another alignment.init"
        )
    model = ctx.load_source_model()
    src_out = model.get_output_embeddings().weight.detach().cpu()  # (source_rows, hidden)
    texts = ctx.calibration.texts
    ids = ctx.source_tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    hidden = cal.head_inputs(model, ids, ctx.calibration.max_tokens)  # (N, hidden)
    del model
    u = bias_direction(hidden)
    fit = hidden.to(torch.float64) @ u
    counts = cal.token_counts(ctx.target_tokenizer, texts, ctx.mapping.target_vocab_size)
    first = first_pieces(ctx, recipe)
    shares = log_shares(first, counts)
    fvt_out = build_rows(src_out, recipe, n_used=len(ctx.source_tokenizer), n_rows=input_rows.shape[0])
    multi = [label == "fvt" and len(ids) > 1 for label, ids in zip(recipe.labels, recipe.source_ids)]
    out = output_rows(src_out, input_rows, first, shares, u, fvt_out, multi, MIX)
    ctx.info["fvt_prior"] = {
        "hidden_states": int(hidden.shape[0]),
        "bias_fit_mean": round(float(fit.mean()), 4) if len(fit) else None,
        "bias_fit_std": round(float(fit.std()), 4) if len(fit) > 1 else None,
        "counted_tokens": int(counts.sum()),
        "groups": len({p for p in first if p is not None}),
    }
    log.info(
        "fvt_prior: %d output rows from first piece + log share; bias direction fitted on %d hidden states "
        "(h.u = %.3f +- %.3f)",
        sum(p is not None for p in first),
        hidden.shape[0],
        ctx.info["fvt_prior"]["bias_fit_mean"] or 0,
        ctx.info["fvt_prior"]["bias_fit_std"] or 0,
    )
    return input_rows, out
