"""Mapping rules: map every target token to the source rows that should seed it (TokAlign).

Rules, in order: special tokens by role; identical tokens copy their source; tokens whose top-1
similarity of relative representations (vocabadapt.align.relrep) reaches the threshold are aligned
(hard: the top-1 row; soft: a softmax over the top-k); everything else takes `alignment.fallback`
(fvt: vocabadapt.text.vocab.fvt_pieces, as vocabadapt.init.fvt builds it: the mean of the source rows of the token's text re-tokenised with the source
tokenizer, then the mean of all rows; or mean, random, zero).

Each rule fills the mapping's entries (`MappingEntries`) of the tokens no earlier rule took. The aligner that
runs them in order and summarises the result is vocabadapt.align.aligner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import AlignmentConfig
from ..errors import InputError
from ..text import vocab as V
from .relrep import RelativeRepresentation, blockwise_topk, choose_pivots

log = logging.getLogger(__name__)


@dataclass
class Embeddings:
    """One side's co-occurrence vectors: vectors (n, dim) float32, ids (n,) int64 ascending, counts (n,)."""

    vectors: np.ndarray
    ids: np.ndarray
    counts: np.ndarray


@dataclass
class Candidates:
    """The relative-representation search: pivots and every target row's top-k source ids."""

    pivots: list[tuple[int, int]]
    available: list[tuple[int, int]]  # identical pairs with vectors on both sides
    top_sims: np.ndarray  # (target rows, k) float32, descending; k = 0 without alignment
    top_src: np.ndarray  # (target rows, k) int64 source token ids


def check_embeddings(tgt: Embeddings, src: Embeddings, n_t: int, n_s: int) -> list[str]:
    """Refuse embeddings that do not fit the tokenizers; warn about thin coverage.

    Raises:
        InputError: ids outside a tokenizer, or an empty matrix.
    """
    for side, e, n in (("target", tgt, n_t), ("source", src, n_s)):
        if e.ids.size and (e.ids.max() >= n or e.ids.min() < 0):
            raise InputError(
                f"{side} embeddings hold id {int(e.ids.max())} but the {side} tokenizer has {n} tokens; "
                f"rerun tokenize and embed"
            )
    if tgt.vectors.shape[0] == 0 or src.vectors.shape[0] == 0:
        raise InputError("an embedding matrix is empty; the corpus is too small or tokenize produced no ids")
    warnings = []
    # Missing target rows mean unalignable tokens; missing source rows only fewer candidates.
    for side, rows, n, share in (("target", tgt.ids.size, n_t, 0.5), ("source", src.ids.size, n_s, 0.1)):
        if rows < share * n:
            warnings.append(
                f"{side} embeddings cover only {rows}/{n} tokens ({100 * rows / n:.1f}%); the rest "
                f"cannot be aligned and take the fallback (a larger corpus helps)"
            )
    return warnings


def search(
    tgt: Embeddings, src: Embeddings, identical: dict[int, int], cfg: AlignmentConfig, warnings: list[str]
) -> Candidates:
    """Pivots among identical pairs with vectors, then the top-k source tokens of every target row."""
    import torch

    t_row = {int(t): r for r, t in enumerate(tgt.ids)}
    s_row = {int(s): r for r, s in enumerate(src.ids)}
    available = [(t, s) for t, s in identical.items() if t in t_row and s in s_row]
    pivots = choose_pivots(
        available,
        cfg.pivot_count,
        cfg.pivot_strategy,
        cfg.seed,
        dict(zip(tgt.ids.tolist(), tgt.counts.tolist())),
        dict(zip(src.ids.tolist(), src.counts.tolist())),
    )
    if len(pivots) < cfg.pivot_count:
        warnings.append(
            f"only {len(pivots)} identical pairs have vectors on both sides, fewer than "
            f"alignment.pivot_count={cfg.pivot_count}; using all of them"
        )
    k = max(cfg.top_k, 5)
    top_sims = np.full((tgt.ids.size, 0), np.nan, dtype=np.float32)
    top_src = np.zeros((tgt.ids.size, 0), dtype=np.int64)
    if len(pivots) >= 2:
        torch.manual_seed(cfg.seed)
        rel_t = RelativeRepresentation(tgt.vectors, [t_row[t] for t, _ in pivots])  # lazy (rows_t, P)
        rel_s = RelativeRepresentation(src.vectors, [s_row[s] for _, s in pivots]).full()  # (rows_s, P)
        top_sims, top_rows = blockwise_topk(rel_t, rel_s, k, block_rows=cfg.block_size)
        top_src = src.ids[top_rows]  # (rows_t, k) source token ids
    else:
        warnings.append("fewer than 2 pivots: no alignment is possible; non-identical tokens take the fallback")
    return Candidates(pivots, available, top_sims, top_src)


@dataclass
class MappingEntries:
    """The mapping's entries (its columns, index = target id) while the rules fill them."""

    methods: list[str]
    source_ids: list[list[int]]
    weights: list[list[float]]
    similarity: list[float | None]

    @classmethod
    def empty(cls, n: int) -> MappingEntries:
        return cls([""] * n, [[] for _ in range(n)], [[] for _ in range(n)], [None] * n)

    def set(self, tid: int, method: str, ids: list[int], weights: list[float]) -> None:
        self.methods[tid], self.source_ids[tid], self.weights[tid] = method, ids, weights


def special_and_identical_entries(
    target_tokenizer: Any, source_tokenizer: Any, warnings: list[str]
) -> tuple[MappingEntries, dict[int, int], tuple[str, str]]:
    """The entries that need no vectors: special tokens by role, then identical tokens map to their source.

    Returns (the entries so far, identical pairs target id -> source id, (target family, source family)).
    """
    t_family, t_forms = V.canonical_vocab(target_tokenizer)
    s_family, s_forms = V.canonical_vocab(source_tokenizer)
    identical = V.identical_from_forms(t_forms, s_forms)  # target id -> source id
    specials, special_notes = V.special_map(target_tokenizer, source_tokenizer)
    warnings += special_notes
    rows = MappingEntries.empty(len(target_tokenizer))
    for tid, sid in specials.items():
        rows.set(tid, "special", [sid], [1.0])
    for tid, sid in identical.items():
        if not rows.methods[tid]:
            rows.set(tid, "identical", [sid], [1.0])
    return rows, identical, (t_family, s_family)


def apply_similarity_rules(
    rows: MappingEntries, tgt: Embeddings, found: Candidates, special_targets: set[int], cfg: AlignmentConfig
) -> tuple[dict[int, list[int]], list[float]]:
    """Aligned (hard) or soft rows for target tokens whose top-1 similarity reaches the threshold.

    Returns (top-k candidates of the aligned tokens, top-1 cosines of every considered token).
    """
    import torch

    aligned: dict[int, list[int]] = {}
    top1: list[float] = []
    if found.top_src.shape[1] == 0:
        return aligned, top1
    for r, tid in enumerate(tgt.ids.tolist()):
        if rows.methods[tid] or tid in special_targets:
            continue
        sims = found.top_sims[r]
        top1.append(float(sims[0]))
        if sims[0] < cfg.similarity_threshold:
            continue
        aligned[tid] = found.top_src[r].tolist()
        rows.similarity[tid] = round(float(sims[0]), 6)
        if cfg.method == "hard":
            rows.set(tid, "aligned", [int(found.top_src[r, 0])], [1.0])
        else:
            kk = cfg.top_k
            w = torch.softmax(torch.as_tensor(sims[:kk], dtype=torch.float64) / cfg.soft_temperature, 0).numpy()
            rows.set(tid, "soft", [int(x) for x in found.top_src[r, :kk]], [round(float(x), 6) for x in w])
    return aligned, top1


def apply_fallback(rows: MappingEntries, target_tokenizer: Any, source_tokenizer: Any, cfg: AlignmentConfig) -> None:
    """Rows of every token no earlier rule mapped: fvt, mean, random or zero.

    fvt is THE FVT of vocabadapt.init.fvt (the token decoded, re-tokenised by the source tokenizer, byte
    pieces mapped byte by byte), with the same equal weights, so `fallback: fvt` and `init: fvt` build
    the same row for the same token.
    """
    from ..text.vocab import fvt_pieces

    n_s = len(source_tokenizer)
    fallback_ids = [t for t in range(len(rows.methods)) if not rows.methods[t]]
    pieces: dict[int, list[int]] = {}
    if cfg.fallback == "fvt" and fallback_ids:
        pieces = dict(zip(fallback_ids, fvt_pieces(target_tokenizer, source_tokenizer, fallback_ids)))
    rng = np.random.default_rng(cfg.seed)
    plain_source = np.array(sorted(set(range(n_s)) - V.special_ids(source_tokenizer)), dtype=np.int64)
    for tid in fallback_ids:
        if cfg.fallback == "fvt" and pieces.get(tid):
            ids = [int(i) for i in pieces[tid]]
            rows.set(tid, "fvt", ids, [1.0 / len(ids)] * len(ids))
        elif cfg.fallback == "random":
            rows.set(tid, "random", [int(rng.choice(plain_source))], [1.0])
        elif cfg.fallback == "zero":
            rows.methods[tid] = "zero"
        else:
            rows.methods[tid] = "mean"
